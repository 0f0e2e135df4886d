// The JSON report (--report) and the summary shoal-tunnel prints at exit.
#include "report.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace shoal::tunnel {

namespace {

nlohmann::ordered_json record_json(const FlowRecord &r)
{
	nlohmann::ordered_json j = {
		{"flow", r.flow},
		{"protocol", r.protocol},
		{"id", r.id},
		{"task", r.task.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.task)},
		{"reason", r.reason.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.reason)},
		{"upgraded", r.upgraded},
		{"ended", r.ended},
		{"relay_bytes_up", r.relay_bytes_up},
		{"relay_bytes_down", r.relay_bytes_down},
		{"tun_packets_out", r.tun_packets_out},
		{"tun_packets_in", r.tun_packets_in},
		{"tun_drops", r.tun_drops},
		{"started_ms", r.started_ms},
	};
	if (r.ended) {
		j["bytes_in"] = r.bytes_in;
		j["bytes_out"] = r.bytes_out;
		j["packets_in"] = r.packets_in;
		j["packets_out"] = r.packets_out;
		j["duration_ms"] = r.duration_ms;
	}
	if (r.confirmed)
		j["confirmed"] = *r.confirmed;
	if (!r.upstream.empty())
		j["upstream"] = r.upstream;
	if (!r.error.empty())
		j["error"] = r.error;
	return j;
}

std::string human_bytes(std::uint64_t n)
{
	char buf[32];
	if (n >= 10ull * 1000 * 1000 * 1000)
		std::snprintf(buf, sizeof buf, "%.1f GB", double(n) / 1e9);
	else if (n >= 10ull * 1000 * 1000)
		std::snprintf(buf, sizeof buf, "%.1f MB", double(n) / 1e6);
	else if (n >= 10ull * 1000)
		std::snprintf(buf, sizeof buf, "%.1f kB", double(n) / 1e3);
	else
		std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
	return buf;
}

} // namespace

FlowRecord &Report::add_flow()
{
	return flows_.emplace_back();
}

std::string Report::to_json(const std::vector<std::string> &program, int exit_status,
			    std::uint64_t duration_ms) const
{
	const Counters &c = counters;
	nlohmann::ordered_json flows = nlohmann::ordered_json::array();
	for (const auto &r : flows_)
		flows.push_back(record_json(r));
	nlohmann::ordered_json counters_json = {
		{"tun_packets_read", c.tun_packets_read},
		{"tun_bytes_read", c.tun_bytes_read},
		{"tun_packets_written", c.tun_packets_written},
		{"tun_bytes_written", c.tun_bytes_written},
		{"tun_write_errors", c.tun_write_errors},
		{"unparseable", c.unparseable},
		{"not_tcp_udp", c.not_tcp_udp},
		{"rst_sent", c.rst_sent},
		{"late_packets", c.late_packets},
		{"icmp_unreachable_sent", c.icmp_unreachable_sent},
		{"flows_tcp", c.flows_tcp},
		{"flows_udp", c.flows_udp},
		{"flows_busy", c.flows_busy},
		{"syn_retransmits", c.syn_retransmits},
		{"flow_queue_drops", c.flow_queue_drops},
		{"flow_closed_drops", c.flow_closed_drops},
		{"flow_recv_truncated", c.flow_recv_truncated},
		{"upgrades_sent", c.upgrades_sent},
		{"upgraded", c.upgraded},
		{"upgrade_errors", c.upgrade_errors},
		{"upgrade_no_answer", c.upgrade_no_answer},
		{"syn_events", c.syn_events},
		{"confirms_accepted", c.confirms_accepted},
		{"confirms_refused", c.confirms_refused},
		{"ended", c.ended},
		{"results_unmatched", c.results_unmatched},
		{"upstream_connect_failures", c.upstream_connect_failures},
		{"relays_tcp", c.relays_tcp},
		{"relays_udp", c.relays_udp},
		{"relay_errors", c.relay_errors},
		{"relay_bytes_up", c.relay_bytes_up},
		{"relay_bytes_down", c.relay_bytes_down},
		{"link_connects", c.link_connects},
		{"link_losses", c.link_losses},
		{"protocol_errors", c.protocol_errors},
	};
	nlohmann::ordered_json doc = {
		{"program", program},
		{"exit_status", exit_status},
		{"duration_ms", duration_ms},
		{"flows", std::move(flows)},
		{"counters", std::move(counters_json)},
	};
	/* Replace, not throw: a flow label is ours, but a task id is bumblebee's text. */
	return doc.dump(1, '\t', false, nlohmann::json::error_handler_t::replace) + "\n";
}

bool Report::write(const std::string &path, const std::vector<std::string> &program, int exit_status,
		   std::uint64_t duration_ms, std::string &error) const
{
	std::string text = to_json(program, exit_status, duration_ms);
	std::string tmp = path + ".tmp." + std::to_string(::getpid());
	int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		error = tmp + ": " + std::strerror(errno);
		return false;
	}
	std::size_t off = 0;
	while (off < text.size()) {
		ssize_t n = ::write(fd, text.data() + off, text.size() - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			error = tmp + ": " + std::strerror(errno);
			::close(fd);
			::unlink(tmp.c_str());
			return false;
		}
		off += static_cast<std::size_t>(n);
	}
	if (::close(fd) < 0 || ::rename(tmp.c_str(), path.c_str()) < 0) {
		error = path + ": " + std::strerror(errno);
		::unlink(tmp.c_str());
		return false;
	}
	return true;
}

std::string Report::summary(int exit_status, std::uint64_t duration_ms) const
{
	const Counters &c = counters;
	std::uint64_t failed = 0;
	for (const auto &r : flows_)
		failed += !r.error.empty();
	char buf[1024];
	std::snprintf(buf, sizeof buf,
		      "PROGRAM exited %d after %.1f s; flows %llu (tcp %llu, udp %llu): upgraded %llu, "
		      "with errors %llu; relayed up %s, down %s; tun0 read %llu packets, wrote %llu; "
		      "rst %llu, dropped %llu (queue full %llu, unparseable %llu, not tcp/udp %llu)",
		      exit_status, double(duration_ms) / 1000.0,
		      static_cast<unsigned long long>(c.flows_tcp + c.flows_udp),
		      static_cast<unsigned long long>(c.flows_tcp), static_cast<unsigned long long>(c.flows_udp),
		      static_cast<unsigned long long>(c.upgraded), static_cast<unsigned long long>(failed),
		      human_bytes(c.relay_bytes_up).c_str(), human_bytes(c.relay_bytes_down).c_str(),
		      static_cast<unsigned long long>(c.tun_packets_read),
		      static_cast<unsigned long long>(c.tun_packets_written),
		      static_cast<unsigned long long>(c.rst_sent),
		      static_cast<unsigned long long>(c.flow_queue_drops + c.flow_closed_drops + c.unparseable + c.not_tcp_udp),
		      static_cast<unsigned long long>(c.flow_queue_drops),
		      static_cast<unsigned long long>(c.unparseable),
		      static_cast<unsigned long long>(c.not_tcp_udp));
	return buf;
}

} // namespace shoal::tunnel
