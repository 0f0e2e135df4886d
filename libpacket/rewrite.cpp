// NAT rewrites of a parsed packet's source or destination, with incremental checksum updates.
#include <shoal/packet/packet.h>

#include "internal.h"

namespace shoal::packet {

using namespace detail;

namespace {

/*
 * A recomputation never yields the negative zero 0xFFFF for data that is not all zero (and
 * a header never is); eqn. 3 does when the stored checksum was itself 0xFFFF (which
 * verifies too). Returning the form a recomputation would write keeps both paths identical.
 */
inline std::uint16_t canonical(std::uint16_t check)
{
	return check == 0xFFFF ? 0 : check;
}

void rewrite(Packet &p, const Endpoint &e, bool source)
{
	if (!p.data || e.addr.family != p.family || (p.family != AF_INET && p.family != AF_INET6))
		return;
	const std::size_t n = addr_len(p.family);
	std::uint8_t *addr = p.data + (source ? src_offset(p.family) : dst_offset(p.family));
	const std::uint8_t *new_addr = e.addr.bytes.data();

	/* The address change, summed once for the IPv4 header and the pseudo-header. */
	const std::uint32_t addr_delta = sum_delta(addr, new_addr, n);
	if (p.family == AF_INET && p.l3_len >= ipv4_header_min) {
		std::uint8_t *hc = p.data + ipv4_off_check;
		store_raw16(hc, canonical(apply_delta(load_raw16(hc), addr_delta)));
	}

	/* 8 bytes of transport are what parse and parse_embedded guarantee; a hand-made view may lack them. */
	const bool have_l4 = p.l4 && p.l4_len >= 8;
	std::uint8_t *port = nullptr;
	if (have_l4 && (p.proto == proto_tcp || p.proto == proto_udp))
		port = p.l4 + (source ? 0 : 2);
	else if (have_l4 && p.is_icmp_echo())
		/* One id names both ends of an echo flow. */
		port = p.l4 + icmp_off_id;
	std::uint8_t new_port[2];
	store16(new_port, e.port);

	const std::size_t off = transport_check_offset(p.proto);
	const bool covered = has_pseudo_header(p.proto) || port;
	/* A quoted TCP header may be cut before its checksum; the ports are there regardless. */
	if (covered && have_l4 && off && p.l4_len >= off + 2) {
		std::uint8_t *check_field = p.l4 + off;
		std::uint16_t check = load_raw16(check_field);
		/*
		 * Zero is "no checksum" over IPv4, and over IPv6 it is either an RFC 6936 tunnel or
		 * invalid: left as it is in both cases, as Linux NAT does, rather than invented.
		 */
		const bool udp_no_checksum = p.proto == proto_udp && check == 0;
		if (!udp_no_checksum) {
			std::uint32_t delta = has_pseudo_header(p.proto) ? addr_delta : 0;
			if (port)
				delta += sum_delta(port, new_port, 2);
			check = apply_delta(check, delta);
			if (p.proto == proto_udp)
				check = check == 0 ? 0xFFFF : check;
			else
				check = canonical(check);
			store_raw16(check_field, check);
		}
	}

	std::memcpy(addr, new_addr, n);
	if (port) {
		std::memcpy(port, new_port, 2);
		if (p.proto == proto_tcp || p.proto == proto_udp)
			(source ? p.sport : p.dport) = e.port;
		else
			p.sport = p.dport = e.port;
	}
}

} // namespace

void set_src(Packet &p, const Endpoint &e)
{
	rewrite(p, e, true);
}

void set_dst(Packet &p, const Endpoint &e)
{
	rewrite(p, e, false);
}

} // namespace shoal::packet
