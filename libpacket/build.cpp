// Builders of whole packets: TCP RST and segments, ICMP destination unreachable, UDP datagrams.
#include <shoal/packet/packet.h>

#include <algorithm>
#include <atomic>

#include "internal.h"

namespace shoal::packet {

using namespace detail;

namespace {

constexpr std::uint8_t default_ttl = 64;
constexpr std::size_t ipv4_min_mtu = 576; /* RFC 1812 4.3.2.3: what an ICMPv4 error may fill */
constexpr std::size_t ipv6_min_mtu = 1280; /* RFC 4443 2.4(c) */

struct IpFields {
	int family;
	const std::uint8_t *src;
	const std::uint8_t *dst;
	std::uint8_t proto;
	std::uint8_t ttl;
	std::uint8_t tos;
	bool dont_fragment;
	std::uint16_t id;
};

std::size_t ip_header_len(int family)
{
	return family == AF_INET ? ipv4_header_min : ipv6_header_len;
}

/* Writes the IP header for l4_len bytes of transport; returns its length. */
std::size_t write_ip_header(std::uint8_t *out, const IpFields &f, std::size_t l4_len)
{
	if (f.family == AF_INET) {
		std::memset(out, 0, ipv4_header_min);
		out[0] = 0x45;
		out[1] = f.tos;
		store16(out + ipv4_off_total_len, static_cast<std::uint16_t>(ipv4_header_min + l4_len));
		store16(out + 4, f.id);
		store16(out + ipv4_off_frag, f.dont_fragment ? 0x4000 : 0);
		out[ipv4_off_ttl] = f.ttl;
		out[ipv4_off_proto] = f.proto;
		std::memcpy(out + ipv4_off_src, f.src, 4);
		std::memcpy(out + ipv4_off_dst, f.dst, 4);
		return ipv4_header_min;
	}
	std::memset(out, 0, ipv6_header_len);
	out[0] = 0x60;
	store16(out + ipv6_off_payload_len, static_cast<std::uint16_t>(l4_len));
	out[ipv6_off_next] = f.proto;
	out[ipv6_off_hop_limit] = f.ttl;
	std::memcpy(out + ipv6_off_src, f.src, 16);
	std::memcpy(out + ipv6_off_dst, f.dst, 16);
	return ipv6_header_len;
}

/* Fills every checksum of a packet this file just wrote, without parsing it back. */
void finish_packet(std::uint8_t *out, int family, std::uint8_t proto, std::size_t l3_len, std::size_t l4_len)
{
	Packet p;
	p.data = out;
	p.len = l3_len + l4_len;
	p.family = family;
	p.l3_len = l3_len;
	p.proto = proto;
	p.l4 = out + l3_len;
	p.l4_len = l4_len;
	fill_checksums(p);
}

/*
 * Datagrams that may be fragmented need IDs that differ within a flow (RFC 6864); a process
 * wide counter is enough for that and costs no state per flow.
 */
std::uint16_t next_ipv4_id()
{
	static std::atomic<std::uint16_t> counter{0};
	return counter.fetch_add(1, std::memory_order_relaxed);
}

/*
 * Checks that an IP packet of l4_header + payload_len bytes from src to dst fits in cap (and in
 * 16-bit length fields: no jumbograms) and moves the payload into place (memmove: callers may
 * have written it in place after header room). Returns the IP header length, or 0.
 */
std::size_t place_payload(std::uint8_t *out, std::size_t cap, const Endpoint &src, const Endpoint &dst,
			  std::size_t l4_header, const void *payload, std::size_t payload_len)
{
	const int family = src.addr.family;
	if (!out || family != dst.addr.family || (family != AF_INET && family != AF_INET6) ||
	    (payload_len && !payload))
		return 0;
	const std::size_t l3_len = ip_header_len(family);
	const std::size_t max_l4 = family == AF_INET ? 0xFFFF - ipv4_header_min : 0xFFFF;
	if (payload_len > max_l4 - l4_header || cap < l3_len + l4_header + payload_len)
		return 0;
	if (payload_len)
		std::memmove(out + l3_len + l4_header, payload, payload_len);
	return l3_len;
}

} // namespace

std::size_t build_tcp_rst(std::uint8_t *out, std::size_t cap, const Packet &to)
{
	/* RFC 793: a RST is never answered, or two stacks could reset each other forever. */
	if (!out || !to.data || to.proto != proto_tcp || (to.tcp_flags & tcp_rst) ||
	    (to.family != AF_INET && to.family != AF_INET6))
		return 0;
	/* Everything is read from `to` before anything is written: out may be to's own buffer. */
	const Endpoint back_to = to.src(), from = to.dst();
	std::uint32_t seq = 0, ack = 0;
	std::uint8_t flags = tcp_rst;
	if (to.tcp_flags & tcp_ack) {
		seq = to.ack;
	} else {
		/* SYN and FIN each occupy one sequence number. */
		ack = to.seq + static_cast<std::uint32_t>(to.payload_len()) + ((to.tcp_flags & tcp_syn) ? 1 : 0) +
		      ((to.tcp_flags & tcp_fin) ? 1 : 0);
		flags |= tcp_ack;
	}
	return build_tcp(out, cap, from, back_to, seq, ack, flags, 0, nullptr, 0, default_ttl);
}

std::size_t build_icmp_unreachable(std::uint8_t *out, std::size_t cap, const Packet &about,
				   const Addr &from, std::uint8_t code)
{
	/* RFC 1122 3.2.2 / RFC 4443 2.4(e): never an error about an error. */
	if (!out || !about.data || from.family != about.family || about.is_icmp_error() ||
	    (about.family != AF_INET && about.family != AF_INET6))
		return 0;
	const bool v4 = about.family == AF_INET;
	const std::size_t l3_len = ip_header_len(about.family);
	const std::size_t limit = v4 ? ipv4_min_mtu : ipv6_min_mtu;
	const std::size_t quote = std::min(about.len, limit - l3_len - icmp_header_len);
	const std::size_t l4_len = icmp_header_len + quote;
	const std::size_t total = l3_len + l4_len;
	if (cap < total)
		return 0;

	std::uint8_t dst[16];
	std::memcpy(dst, about.data + src_offset(about.family), addr_len(about.family));
	/* memmove, and before the headers go in: out may be about's own buffer. */
	std::memmove(out + l3_len + icmp_header_len, about.data, quote);

	/* IPv4 errors carry the internet-control precedence, as routers send them. */
	write_ip_header(out, IpFields{about.family, from.bytes.data(), dst, v4 ? proto_icmp : proto_icmpv6,
				      default_ttl, static_cast<std::uint8_t>(v4 ? 0xC0 : 0), false, 0},
			l4_len);
	std::uint8_t *icmp = out + l3_len;
	std::memset(icmp, 0, icmp_header_len);
	icmp[0] = v4 ? 3 : 1;
	icmp[1] = code;
	finish_packet(out, about.family, v4 ? proto_icmp : proto_icmpv6, l3_len, l4_len);
	return total;
}

std::size_t build_udp(std::uint8_t *out, std::size_t cap, const Endpoint &src, const Endpoint &dst,
		      const void *payload, std::size_t payload_len, std::uint8_t ttl)
{
	const std::size_t l3_len = place_payload(out, cap, src, dst, udp_header_len, payload, payload_len);
	if (!l3_len)
		return 0;
	const int family = src.addr.family;
	const std::size_t l4_len = udp_header_len + payload_len;
	const bool v4 = family == AF_INET;
	write_ip_header(out, IpFields{family, src.addr.bytes.data(), dst.addr.bytes.data(), proto_udp, ttl, 0,
				      false, v4 ? next_ipv4_id() : std::uint16_t{0}},
			l4_len);
	std::uint8_t *udp = out + l3_len;
	store16(udp, src.port);
	store16(udp + 2, dst.port);
	store16(udp + udp_off_len, static_cast<std::uint16_t>(l4_len));
	store16(udp + udp_off_check, 0);
	finish_packet(out, family, proto_udp, l3_len, l4_len);
	return l3_len + l4_len;
}

std::size_t build_tcp(std::uint8_t *out, std::size_t cap, const Endpoint &src, const Endpoint &dst,
		      std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, std::uint16_t window,
		      const void *payload, std::size_t payload_len, std::uint8_t ttl)
{
	const std::size_t l3_len = place_payload(out, cap, src, dst, tcp_header_min, payload, payload_len);
	if (!l3_len)
		return 0;
	const int family = src.addr.family;
	const std::size_t l4_len = tcp_header_min + payload_len;
	/* DF and ID 0, as Linux sends TCP (path MTU discovery). */
	write_ip_header(out, IpFields{family, src.addr.bytes.data(), dst.addr.bytes.data(), proto_tcp, ttl, 0, true, 0},
			l4_len);
	std::uint8_t *tcp = out + l3_len;
	std::memset(tcp, 0, tcp_header_min);
	store16(tcp, src.port);
	store16(tcp + 2, dst.port);
	store32(tcp + 4, seq);
	store32(tcp + 8, ack);
	tcp[12] = static_cast<std::uint8_t>((tcp_header_min / 4) << 4);
	tcp[13] = flags;
	store16(tcp + 14, window);
	finish_packet(out, family, proto_tcp, l3_len, l4_len);
	return l3_len + l4_len;
}

} // namespace shoal::packet
