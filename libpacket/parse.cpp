// Parsing of untrusted IPv4/IPv6 packets and of the packets quoted inside ICMP errors.
#include <shoal/packet/packet.h>

#include <algorithm>

#include "internal.h"

/*
 * Error classes, so every caller sees the same one for the same defect:
 *   truncated    the bytes end before a header they must hold (IPv4 IHL, IPv6 extension
 *                header, TCP data offset, the fixed UDP/ICMP header);
 *   bad_length   a length field (IPv4 total length, IPv6 payload length, UDP length)
 *                disagrees with the buffer or with the header it covers;
 *   bad_header   IHL < 5, TCP data offset < 5, hop-by-hop not first, more than 8
 *                extension headers.
 * Checks run outside in, so a packet with several defects reports the outermost one.
 */

namespace shoal::packet {

using namespace detail;

namespace {

/* RFC 8200 asks for no limit, but an attacker-sized chain must not cost unbounded work. */
constexpr int max_ext_headers = 8;

constexpr std::uint8_t ipv6_hop_by_hop = 0;
constexpr std::uint8_t ipv6_routing = 43;
constexpr std::uint8_t ipv6_fragment = 44;
constexpr std::uint8_t ipv6_dest_opts = 60;

Unexpected<ParseError> fail(ParseError e)
{
	return Unexpected<ParseError>(e);
}

/*
 * Fills the transport fields from l4/l4_len. A quoted packet (inside an ICMP error) is often
 * cut short, so there only the first 8 bytes are required and the rest is read if present.
 */
Expected<void, ParseError> parse_transport(Packet &p, bool quoted)
{
	const std::uint8_t *l4 = p.l4;
	switch (p.proto) {
	case proto_tcp: {
		if (p.l4_len < (quoted ? std::size_t{8} : tcp_header_min))
			return fail(ParseError::truncated);
		p.sport = load16(l4);
		p.dport = load16(l4 + 2);
		p.seq = load32(l4 + 4);
		std::size_t header = tcp_header_min;
		if (p.l4_len >= 12)
			p.ack = load32(l4 + 8);
		if (p.l4_len >= 14) {
			header = (std::size_t{l4[12]} >> 4) * 4;
			p.tcp_flags = l4[13];
			if (header < tcp_header_min)
				return fail(ParseError::bad_header);
		}
		if (header > p.l4_len) {
			if (!quoted)
				return fail(ParseError::truncated);
			header = p.l4_len;
		}
		p.l4_header_len = header;
		return {};
	}
	case proto_udp: {
		if (p.l4_len < udp_header_len)
			return fail(ParseError::truncated);
		p.sport = load16(l4);
		p.dport = load16(l4 + 2);
		p.l4_header_len = udp_header_len;
		if (!quoted) {
			const std::size_t ulen = load16(l4 + udp_off_len);
			if (ulen < udp_header_len || ulen > p.l4_len)
				return fail(ParseError::bad_length);
			/* Bytes after the datagram are IP-level padding: ignored as Linux does, and outside the checksum. */
			p.l4_len = ulen;
		}
		return {};
	}
	case proto_icmp:
	case proto_icmpv6:
		if (p.l4_len < icmp_header_len)
			return fail(ParseError::truncated);
		p.icmp_type = l4[0];
		p.icmp_code = l4[1];
		p.l4_header_len = icmp_header_len;
		if (is_icmp_echo(p.family, p.proto, p.icmp_type)) {
			p.sport = load16(l4 + icmp_off_id);
			p.dport = p.sport;
		}
		return {};
	default:
		return fail(ParseError::unsupported);
	}
}

Expected<Packet, ParseError> parse_ipv4(std::uint8_t *data, std::size_t len, bool quoted)
{
	if (len < ipv4_header_min)
		return fail(ParseError::truncated);
	const std::size_t ihl = std::size_t{data[0] & 0x0Fu} * 4;
	if (ihl < ipv4_header_min)
		return fail(ParseError::bad_header);
	if (ihl > len)
		return fail(ParseError::truncated);
	std::size_t total = load16(data + ipv4_off_total_len);
	if (total < ihl)
		return fail(ParseError::bad_length);
	if (total > len) {
		/* The sender of an ICMP error quotes only the start of the packet. */
		if (!quoted)
			return fail(ParseError::bad_length);
		total = len;
	}
	if (!quoted && checksum_finish(checksum_add(0, data, ihl)) != 0)
		return fail(ParseError::bad_checksum);
	const std::uint16_t frag = load16(data + ipv4_off_frag);
	const bool more_fragments = frag & 0x2000;
	const bool later_fragment = frag & 0x1FFF;
	/* A quoted first fragment still starts with the ports, which is all an ICMP error needs. */
	if (later_fragment || (more_fragments && !quoted))
		return fail(ParseError::fragment);

	Packet p;
	p.data = data;
	p.len = total;
	p.family = AF_INET;
	p.l3_len = ihl;
	p.proto = data[ipv4_off_proto];
	p.ttl = data[ipv4_off_ttl];
	p.l4 = data + ihl;
	p.l4_len = total - ihl;
	if (p.proto != proto_tcp && p.proto != proto_udp && p.proto != proto_icmp)
		return fail(ParseError::unsupported);
	if (auto r = parse_transport(p, quoted); !r)
		return fail(r.error());
	return p;
}

Expected<Packet, ParseError> parse_ipv6(std::uint8_t *data, std::size_t len, bool quoted)
{
	if (len < ipv6_header_len)
		return fail(ParseError::truncated);
	std::size_t total = ipv6_header_len + load16(data + ipv6_off_payload_len);
	if (total > len) {
		if (!quoted)
			return fail(ParseError::bad_length);
		total = len;
	}

	std::uint8_t next = data[ipv6_off_next];
	std::size_t off = ipv6_header_len;
	for (int count = 0;; ++count) {
		if (next == proto_tcp || next == proto_udp || next == proto_icmpv6)
			break;
		if (next != ipv6_hop_by_hop && next != ipv6_routing && next != ipv6_dest_opts &&
		    next != ipv6_fragment)
			/* AH, ESP, no-next-header, ICMPv4 and anything unknown. */
			return fail(ParseError::unsupported);
		if (next == ipv6_hop_by_hop && off != ipv6_header_len)
			/* RFC 8200 4.1: only directly after the IPv6 header. */
			return fail(ParseError::bad_header);
		if (count == max_ext_headers)
			return fail(ParseError::bad_header);
		if (next == ipv6_fragment) {
			if (!quoted)
				return fail(ParseError::fragment);
			if (off + 8 > total)
				return fail(ParseError::truncated);
			if (load16(data + off + 2) & 0xFFF8)
				return fail(ParseError::fragment);
			next = data[off];
			off += 8;
			continue;
		}
		if (off + 2 > total)
			return fail(ParseError::truncated);
		const std::size_t ext_len = (std::size_t{data[off + 1]} + 1) * 8;
		if (ext_len > total - off)
			return fail(ParseError::truncated);
		/*
		 * With segments left, the destination address is an intermediate hop: the flow key
		 * and the checksum's pseudo-header (RFC 8200 8.1) would name the wrong host.
		 */
		if (next == ipv6_routing && data[off + 3] != 0)
			return fail(ParseError::unsupported);
		next = data[off];
		off += ext_len;
	}

	Packet p;
	p.data = data;
	p.len = total;
	p.family = AF_INET6;
	p.l3_len = off;
	p.proto = next;
	p.ttl = data[ipv6_off_hop_limit];
	p.l4 = data + off;
	p.l4_len = total - off;
	if (auto r = parse_transport(p, quoted); !r)
		return fail(r.error());
	return p;
}

} // namespace

namespace detail {

bool is_icmp_echo(int family, std::uint8_t proto, std::uint8_t type)
{
	if (family == AF_INET && proto == proto_icmp)
		return type == 8 || type == 0;
	if (family == AF_INET6 && proto == proto_icmpv6)
		return type == 128 || type == 129;
	return false;
}

bool is_icmp_error(int family, std::uint8_t proto, std::uint8_t type)
{
	if (family == AF_INET && proto == proto_icmp)
		return type == 3 || type == 11 || type == 12;
	if (family == AF_INET6 && proto == proto_icmpv6)
		return type >= 1 && type <= 4;
	return false;
}

} // namespace detail

Addr Packet::src_addr() const
{
	if (!data)
		return Addr{};
	return family == AF_INET ? Addr::v4_bytes(data + ipv4_off_src) : Addr::v6_bytes(data + ipv6_off_src);
}

Addr Packet::dst_addr() const
{
	if (!data)
		return Addr{};
	return family == AF_INET ? Addr::v4_bytes(data + ipv4_off_dst) : Addr::v6_bytes(data + ipv6_off_dst);
}

bool Packet::is_icmp_echo() const
{
	return detail::is_icmp_echo(family, proto, icmp_type);
}

bool Packet::is_icmp_error() const
{
	return detail::is_icmp_error(family, proto, icmp_type);
}

Expected<Packet, ParseError> parse(std::uint8_t *data, std::size_t len)
{
	if (!data || len == 0)
		return fail(ParseError::truncated);
	switch (data[0] >> 4) {
	case 4:
		return parse_ipv4(data, len, false);
	case 6:
		return parse_ipv6(data, len, false);
	default:
		return fail(ParseError::bad_version);
	}
}

Expected<Packet, ParseError> parse_embedded(const Packet &icmp_error)
{
	if (!icmp_error.data || !icmp_error.l4 || !icmp_error.is_icmp_error() ||
	    icmp_error.l4_len < icmp_error.l4_header_len)
		return fail(ParseError::unsupported);
	std::uint8_t *quoted = icmp_error.payload();
	const std::size_t len = icmp_error.payload_len();
	if (len == 0)
		return fail(ParseError::truncated);
	/* An ICMPv4 error can only be about an IPv4 packet, an ICMPv6 one about IPv6. */
	const int version = quoted[0] >> 4;
	if (version == 4 && icmp_error.family == AF_INET)
		return parse_ipv4(quoted, len, true);
	if (version == 6 && icmp_error.family == AF_INET6)
		return parse_ipv6(quoted, len, true);
	return fail(ParseError::bad_version);
}

const char *to_string(ParseError e)
{
	switch (e) {
	case ParseError::truncated:
		return "truncated";
	case ParseError::bad_version:
		return "bad_version";
	case ParseError::bad_header:
		return "bad_header";
	case ParseError::bad_length:
		return "bad_length";
	case ParseError::bad_checksum:
		return "bad_checksum";
	case ParseError::fragment:
		return "fragment";
	case ParseError::unsupported:
		return "unsupported";
	}
	return "unknown";
}

} // namespace shoal::packet
