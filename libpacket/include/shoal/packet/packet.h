// IPv4/IPv6 + TCP/UDP/ICMP parsing, flow keys, RFC 1624 checksum updates and NAT rewrites, shared by bumblebee, fish and the tunnel client.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>

#include <shoal/expected.h>

namespace shoal::packet {

inline constexpr std::uint8_t proto_icmp = 1;
inline constexpr std::uint8_t proto_tcp = 6;
inline constexpr std::uint8_t proto_udp = 17;
inline constexpr std::uint8_t proto_icmpv6 = 58;

inline constexpr std::uint8_t tcp_fin = 0x01;
inline constexpr std::uint8_t tcp_syn = 0x02;
inline constexpr std::uint8_t tcp_rst = 0x04;
inline constexpr std::uint8_t tcp_psh = 0x08;
inline constexpr std::uint8_t tcp_ack = 0x10;

/* An IPv4 or IPv6 address; IPv4 uses the first 4 bytes, the rest are zero. */
struct Addr {
	int family = AF_INET; /* AF_INET or AF_INET6 */
	std::array<std::uint8_t, 16> bytes{};

	static Addr v4(std::uint32_t host_order);
	static Addr v4_bytes(const void *four);
	static Addr v6_bytes(const void *sixteen);
	/* "198.51.100.1" or "2001:db8::1" (no brackets); nullopt if neither. */
	static std::optional<Addr> parse(const std::string &text);

	std::size_t size() const { return family == AF_INET ? 4 : 16; }
	std::uint32_t v4_host() const; /* only for AF_INET */
	std::string to_string() const; /* RFC 5952 for IPv6 */
	friend bool operator==(const Addr &, const Addr &) = default;
};

/* An address and a port (host order); for ICMP echo the "port" is the echo id. */
struct Endpoint {
	Addr addr;
	std::uint16_t port = 0;

	/* "198.51.100.1:80" or "[2001:db8::1]:80" */
	std::string to_string() const;
	/* The sockaddr_in/_in6 for this endpoint; returns its length. */
	socklen_t to_sockaddr(sockaddr_storage &ss) const;
	static std::optional<Endpoint> from_sockaddr(const sockaddr *sa, socklen_t len);
	friend bool operator==(const Endpoint &, const Endpoint &) = default;
};

/* A transport flow as seen in one direction of packets. */
struct FlowKey {
	std::uint8_t proto = proto_tcp;
	Endpoint src;
	Endpoint dst;

	FlowKey reversed() const { return FlowKey{proto, dst, src}; }
	friend bool operator==(const FlowKey &, const FlowKey &) = default;
};

struct FlowKeyHash {
	std::size_t operator()(const FlowKey &k) const noexcept;
};
struct EndpointHash {
	std::size_t operator()(const Endpoint &e) const noexcept;
};

enum class ParseError {
	truncated,           /* shorter than its headers say */
	bad_version,         /* IP version neither 4 nor 6 */
	bad_header,          /* IHL < 5, TCP data offset < 5, ext header chain too long, … */
	bad_length,          /* total/payload length disagrees with the buffer */
	bad_checksum,        /* IPv4 header checksum wrong (transport checksums: verify_transport_checksum) */
	fragment,            /* a fragment (IPv4 MF/offset, IPv6 fragment header) */
	unsupported,         /* a transport this library does not parse */
};
const char *to_string(ParseError e);

/*
 * A parsed view of one IP packet in a caller's mutable buffer. Rewrites edit the buffer in
 * place. The buffer may be longer than the packet (trailing bytes are ignored; len is the
 * IP total length).
 */
struct Packet {
	std::uint8_t *data = nullptr;
	std::size_t len = 0;      /* the IP packet's length (from its header) */
	int family = AF_INET;     /* AF_INET or AF_INET6 */
	std::size_t l3_len = 0;   /* IP header incl. IPv6 extension headers */
	std::uint8_t proto = 0;   /* transport protocol (after extension headers) */
	std::uint8_t *l4 = nullptr;
	std::size_t l4_len = 0;   /* transport header + payload (UDP: its length field, which may be less than the IP payload) */
	std::uint8_t ttl = 0;     /* TTL / hop limit */

	/* Transport fields (zero when not applicable). */
	std::uint16_t sport = 0, dport = 0; /* TCP/UDP ports; ICMP echo: both are the echo id */
	std::uint8_t tcp_flags = 0;
	std::uint32_t seq = 0, ack = 0;
	std::size_t l4_header_len = 0;      /* TCP incl. options, UDP 8, ICMP 8 */
	std::uint8_t icmp_type = 0, icmp_code = 0;

	Addr src_addr() const;
	Addr dst_addr() const;
	Endpoint src() const { return Endpoint{src_addr(), sport}; }
	Endpoint dst() const { return Endpoint{dst_addr(), dport}; }
	FlowKey key() const { return FlowKey{proto, src(), dst()}; }
	std::uint8_t *payload() const { return l4 + l4_header_len; }
	std::size_t payload_len() const { return l4_len - l4_header_len; }

	bool is_icmp_echo() const;  /* ICMP echo request/reply (v4 8/0, v6 128/129) */
	bool is_icmp_error() const; /* v4 3,11,12 / v6 1,2,3,4 */
};

/*
 * Parses an IPv4 or IPv6 packet carrying TCP, UDP, ICMP or ICMPv6 (other transports and
 * fragments are errors). Checks every length against len; verifies the IPv4 header checksum.
 */
Expected<Packet, ParseError> parse(std::uint8_t *data, std::size_t len);

/*
 * Parses the packet quoted inside an ICMP error (RFC 792/4443): an IP header and at least
 * the first 8 bytes of its transport header (ports / echo id). Lenient about the quoted
 * packet's total length (it was truncated by the sender) and skips checksum checks; the
 * result's len/l4_len cover only what is present.
 */
Expected<Packet, ParseError> parse_embedded(const Packet &icmp_error);

/* The ones'-complement sum of data (not folded, not inverted), added to sum. */
std::uint32_t checksum_add(std::uint32_t sum, const void *data, std::size_t len);
/* Folds to 16 bits and inverts: the value to store in a checksum field (as is, with memcpy: it is in network order). */
std::uint16_t checksum_finish(std::uint32_t sum);
/* RFC 1624 eqn. 3: the new checksum after a 16-bit word changes from old to now (network order values). */
std::uint16_t checksum_update16(std::uint16_t check, std::uint16_t old_word, std::uint16_t new_word);
/* The same over len bytes (len even, data 16-bit aligned relative to the checksummed area). */
std::uint16_t checksum_update(std::uint16_t check, const void *old_bytes, const void *new_bytes, std::size_t len);

/* Recomputes the IPv4 header checksum (no-op for IPv6) and the transport checksum from scratch. */
void fill_checksums(Packet &p);
/* True if the transport checksum (with pseudo-header) is right; UDP/IPv4 checksum 0 counts as right. */
bool verify_transport_checksum(const Packet &p);

/*
 * NAT: sets the source (or destination) address and port in place, updating the IPv4 header
 * checksum and the TCP/UDP/ICMPv6 checksum incrementally (RFC 1624). For ICMP echo the port is
 * the echo id. UDP over IPv4 with checksum 0 stays 0 (so does UDP over IPv6: RFC 6936 zero-checksum
 * tunnels, as Linux NAT does); a computed UDP checksum of 0 is written as 0xFFFF. The new address
 * must be of the packet's family (otherwise nothing changes). Also works on a parse_embedded view
 * (the quoted transport checksum is updated if present); the caller then fixes the outer ICMP
 * checksum, e.g. with fill_checksums on the outer packet.
 */
void set_src(Packet &p, const Endpoint &e);
void set_dst(Packet &p, const Endpoint &e);

/*
 * Builds a TCP RST answering `to` (RFC 793 "reset generation": if `to` has ACK, seq = its ack;
 * else seq 0 with ACK of its seq + payload + SYN + FIN), addressed back to its source.
 * Returns the packet length, or 0 if cap is too small, `to` is not TCP, or `to` is itself a RST
 * (RFC 793: a RST is never answered). out may be to's own buffer.
 */
std::size_t build_tcp_rst(std::uint8_t *out, std::size_t cap, const Packet &to);

/*
 * Builds ICMP destination unreachable (IPv4 type 3 with `code`; IPv6 type 1 with `code`)
 * from `from` to the source of `about`, quoting as much of `about` as fits in 576 (IPv4) /
 * 1280 (IPv6) bytes. Returns the length, or 0 if cap is too small, `from` is of the other family,
 * or `about` is itself an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4(e)). out may be about's own
 * buffer.
 */
std::size_t build_icmp_unreachable(std::uint8_t *out, std::size_t cap, const Packet &about,
				   const Addr &from, std::uint8_t code);

/*
 * Builds an IPv4/IPv6 TCP segment without options (checksums filled): for segments a middlebox
 * makes itself, such as a RST on behalf of a flow that ended. 0 if cap is too small, the
 * families differ or the payload does not fit in one IP packet. The payload may overlap out.
 */
std::size_t build_tcp(std::uint8_t *out, std::size_t cap, const Endpoint &src, const Endpoint &dst,
		      std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, std::uint16_t window = 65535,
		      const void *payload = nullptr, std::size_t payload_len = 0, std::uint8_t ttl = 64);

/*
 * Builds an IPv4/IPv6 UDP packet (checksums filled) with the given TTL; 0 if cap is too small or the families differ.
 * payload may overlap out (e.g. already written at out + 28 / out + 48).
 */
std::size_t build_udp(std::uint8_t *out, std::size_t cap, const Endpoint &src, const Endpoint &dst,
		      const void *payload, std::size_t payload_len, std::uint8_t ttl = 64);

} // namespace shoal::packet
