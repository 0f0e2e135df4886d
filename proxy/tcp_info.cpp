// TCP_INFO via the kernel's own struct tcp_info (linux/tcp.h: glibc's copy lacks bytes_acked and friends).
#include "tcp_info.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <netinet/in.h>
#include <sys/socket.h>

#include <linux/tcp.h>

#include <shoal/service/log.h>

namespace shoal::proxy {

namespace {

const char *state_name(unsigned state)
{
	static const char *names[] = {"UNKNOWN",  "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
				      "FIN_WAIT1", "FIN_WAIT2",  "TIME_WAIT", "CLOSE",
				      "CLOSE_WAIT", "LAST_ACK",  "LISTEN",    "CLOSING"};
	return state < sizeof names / sizeof names[0] ? names[state] : "UNKNOWN";
}

} // namespace

nlohmann::json tcp_info_json(int fd)
{
	struct tcp_info ti {};
	socklen_t len = sizeof ti;
	if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return {{"error", service::errno_name(errno)}};

	/* A field counts only if the kernel's struct reached past its end. */
	auto has = [&](std::size_t offset, std::size_t size) { return offset + size <= len; };
#define SHOAL_HAS(field) has(offsetof(struct tcp_info, field), sizeof ti.field)

	nlohmann::json j = nlohmann::json::object();
	j["state"] = state_name(ti.tcpi_state);
	if (SHOAL_HAS(tcpi_rtt)) {
		j["rtt_us"] = ti.tcpi_rtt;
		j["rttvar_us"] = ti.tcpi_rttvar;
		j["snd_cwnd"] = ti.tcpi_snd_cwnd;
	}
	j["retransmits"] = ti.tcpi_retransmits; /* current unrecovered RTO timeouts */
	if (SHOAL_HAS(tcpi_total_retrans))
		j["total_retrans"] = ti.tcpi_total_retrans;
	j["lost"] = ti.tcpi_lost;
	j["snd_mss"] = ti.tcpi_snd_mss;
	j["rcv_mss"] = ti.tcpi_rcv_mss;
	if (SHOAL_HAS(tcpi_bytes_acked))
		j["bytes_acked"] = static_cast<std::uint64_t>(ti.tcpi_bytes_acked);
	if (SHOAL_HAS(tcpi_bytes_received))
		j["bytes_received"] = static_cast<std::uint64_t>(ti.tcpi_bytes_received);
	if (SHOAL_HAS(tcpi_segs_in)) {
		j["segs_out"] = ti.tcpi_segs_out;
		j["segs_in"] = ti.tcpi_segs_in;
	}
	if (SHOAL_HAS(tcpi_min_rtt))
		j["min_rtt_us"] = ti.tcpi_min_rtt;
	if (SHOAL_HAS(tcpi_delivery_rate))
		j["delivery_rate"] = static_cast<std::uint64_t>(ti.tcpi_delivery_rate);
	if (SHOAL_HAS(tcpi_bytes_sent))
		j["bytes_sent"] = static_cast<std::uint64_t>(ti.tcpi_bytes_sent);
	if (SHOAL_HAS(tcpi_bytes_retrans))
		j["bytes_retrans"] = static_cast<std::uint64_t>(ti.tcpi_bytes_retrans);
#undef SHOAL_HAS
	return j;
}

} // namespace shoal::proxy
