// Addresses as they appear on the wire: "198.51.100.10:9000", "[2001:db8::7]:443", "9000-9009".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace shoal::proto {

/* An inclusive range of ports, lo <= hi. */
struct PortRange {
	std::uint16_t lo = 0;
	std::uint16_t hi = 0;

	bool contains(std::uint16_t port) const { return lo <= port && port <= hi; }
	/* Number of ports in the range (65536 for 0-65535, hence 32 bits). */
	std::uint32_t size() const { return hi >= lo ? std::uint32_t(hi) - lo + 1 : 0; }
	friend bool operator==(const PortRange &, const PortRange &) = default;
};

/*
 * "lo-hi": two decimal ports 1..65535 without sign, spaces or leading zeros, lo <= hi
 * ("9000-9000" is a single port). Anything else is nullopt.
 */
std::optional<PortRange> parse_port_range(std::string_view text);
/* "lo-hi" */
std::string format_port_range(PortRange range);

/*
 * A bare address, "198.51.100.10" or "2001:db8::7" (dotted-quad IPv4 only; no brackets,
 * no zone "%eth0"). The result is a sockaddr_in/sockaddr_in6 with port 0.
 */
std::optional<sockaddr_storage> parse_ip(std::string_view text);

/*
 * An endpoint, "198.51.100.10:9000" or "[2001:db8::7]:443". The port is 0..65535 written
 * without sign or leading zeros; IPv6 must be bracketed, IPv4 must not be.
 */
std::optional<sockaddr_storage> parse_endpoint(std::string_view text);

/* The address of an AF_INET/AF_INET6 sockaddr ("2001:db8::7", canonical form); "" for other families. */
std::string format_ip(const sockaddr_storage &addr);
std::string format_ip(const sockaddr *addr, socklen_t len);

/* "198.51.100.10:9000" / "[2001:db8::7]:443"; "" for other families or a too-short len. */
std::string format_endpoint(const sockaddr_storage &addr);
std::string format_endpoint(const sockaddr *addr, socklen_t len);

/* The port of an AF_INET/AF_INET6 sockaddr in host order; 0 for other families. */
std::uint16_t endpoint_port(const sockaddr_storage &addr);

/* Same family, address and port (AF_INET/AF_INET6 only; flow info and scope ignored). */
bool same_endpoint(const sockaddr_storage &a, const sockaddr_storage &b);

} // namespace shoal::proto
