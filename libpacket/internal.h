// Byte-level helpers and header offsets shared by libpacket's sources; not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <arpa/inet.h>

#include <shoal/packet/packet.h>

namespace shoal::packet::detail {

/* Packets sit at any alignment in caller buffers, so fields are assembled byte by byte. */
inline std::uint16_t load16(const std::uint8_t *p)
{
	return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

inline std::uint32_t load32(const std::uint8_t *p)
{
	return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
	       static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

inline void store16(std::uint8_t *p, std::uint16_t v)
{
	p[0] = static_cast<std::uint8_t>(v >> 8);
	p[1] = static_cast<std::uint8_t>(v);
}

inline void store32(std::uint8_t *p, std::uint32_t v)
{
	p[0] = static_cast<std::uint8_t>(v >> 24);
	p[1] = static_cast<std::uint8_t>(v >> 16);
	p[2] = static_cast<std::uint8_t>(v >> 8);
	p[3] = static_cast<std::uint8_t>(v);
}

/*
 * Checksum fields as raw memory: the checksum API works on 16-bit words exactly as they lie in
 * the packet (what RFC 1071 calls byte-order independence), so these are plain copies.
 */
inline std::uint16_t load_raw16(const std::uint8_t *p)
{
	std::uint16_t v;
	std::memcpy(&v, p, 2);
	return v;
}

inline void store_raw16(std::uint8_t *p, std::uint16_t v)
{
	std::memcpy(p, &v, 2);
}

/* Folds a 32-bit ones'-complement sum to 16 bits (not inverted). */
inline std::uint16_t fold32(std::uint32_t sum)
{
	sum = (sum >> 16) + (sum & 0xFFFFu);
	sum = (sum >> 16) + (sum & 0xFFFFu);
	return static_cast<std::uint16_t>(sum);
}

/* The unfolded sum of a few raw words (n even, at most 32 bytes: no overflow). */
inline std::uint32_t sum_words(const std::uint8_t *p, std::size_t n)
{
	std::uint32_t sum = 0;
	for (std::size_t i = 0; i < n; i += 2)
		sum += load_raw16(p + i);
	return sum;
}

/*
 * RFC 1624's ~m + m' for n bytes changing from old to now: what the change adds to a sum.
 * Rewrites compute it once and apply it to every checksum that covers those bytes.
 */
inline std::uint32_t sum_delta(const std::uint8_t *old, const std::uint8_t *now, std::size_t n)
{
	return static_cast<std::uint16_t>(~fold32(sum_words(old, n))) + std::uint32_t{fold32(sum_words(now, n))};
}

/* RFC 1624 eqn. 3 with a precomputed delta: HC' = ~(~HC + delta). */
inline std::uint16_t apply_delta(std::uint16_t check, std::uint32_t delta)
{
	return static_cast<std::uint16_t>(~fold32(static_cast<std::uint16_t>(~check) + delta));
}

/* A host-order number as the raw word it becomes in the packet, for pseudo-header sums. */
inline std::uint16_t raw16(std::uint16_t host)
{
	return htons(host);
}

constexpr std::size_t ipv4_header_min = 20;
constexpr std::size_t ipv6_header_len = 40;
constexpr std::size_t tcp_header_min = 20;
constexpr std::size_t udp_header_len = 8;
constexpr std::size_t icmp_header_len = 8;

/* Offsets inside the IP headers. */
constexpr std::size_t ipv4_off_total_len = 2;
constexpr std::size_t ipv4_off_frag = 6;
constexpr std::size_t ipv4_off_ttl = 8;
constexpr std::size_t ipv4_off_proto = 9;
constexpr std::size_t ipv4_off_check = 10;
constexpr std::size_t ipv4_off_src = 12;
constexpr std::size_t ipv4_off_dst = 16;
constexpr std::size_t ipv6_off_payload_len = 4;
constexpr std::size_t ipv6_off_next = 6;
constexpr std::size_t ipv6_off_hop_limit = 7;
constexpr std::size_t ipv6_off_src = 8;
constexpr std::size_t ipv6_off_dst = 24;

/* Offsets inside the transport headers. */
constexpr std::size_t tcp_off_check = 16;
constexpr std::size_t udp_off_len = 4;
constexpr std::size_t udp_off_check = 6;
constexpr std::size_t icmp_off_check = 2;
constexpr std::size_t icmp_off_id = 4;

inline std::size_t src_offset(int family)
{
	return family == AF_INET ? ipv4_off_src : ipv6_off_src;
}

inline std::size_t dst_offset(int family)
{
	return family == AF_INET ? ipv4_off_dst : ipv6_off_dst;
}

inline std::size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* Where the transport checksum lives, or 0 if this protocol has none we maintain. */
inline std::size_t transport_check_offset(std::uint8_t proto)
{
	switch (proto) {
	case proto_tcp:
		return tcp_off_check;
	case proto_udp:
		return udp_off_check;
	case proto_icmp:
	case proto_icmpv6:
		return icmp_off_check;
	default:
		return 0;
	}
}

/* ICMPv4 alone leaves the addresses out of its checksum. */
inline bool has_pseudo_header(std::uint8_t proto)
{
	return proto != proto_icmp;
}

/* The unfolded sum of the pseudo-header (RFC 768/793 for IPv4, RFC 8200 8.1 for IPv6). */
std::uint32_t pseudo_header_sum(int family, const std::uint8_t *src, const std::uint8_t *dst,
				std::uint8_t proto, std::size_t l4_len);

/* The unfolded sum of the pseudo-header (if the protocol has one) and the l4_len bytes at l4, as they are. */
std::uint32_t transport_sum(const Packet &p);

bool is_icmp_echo(int family, std::uint8_t proto, std::uint8_t type);
bool is_icmp_error(int family, std::uint8_t proto, std::uint8_t type);

} // namespace shoal::packet::detail
