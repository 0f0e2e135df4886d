// Internals shared by the two halves of the netns code (the caller and the helper); not for other users.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace shoal::bumblebee::detail {

/* How long the caller waits for the helper, and the helper for the caller's config. */
inline constexpr int kHelperTimeoutMs = 10000;

/* The names the helper gives its descriptors in its one reply, in the order it sends them. */
inline constexpr const char *kFdTun = "tun";
inline constexpr const char *kFdListener4 = "listener4";
inline constexpr const char *kFdListener6 = "listener6";
inline constexpr const char *kFdNetns = "netns";
inline constexpr const char *kFdUserns = "userns";

struct IpPrefix {
	int family = 0;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16] = {};    /* network byte order; 4 bytes used for AF_INET */
	unsigned prefixlen = 0;
};

/*
 * Parses "address/prefixlen" strictly (inet_pton for the address, 1-3 decimal digits without
 * a leading zero for the length) and checks that the address is one a TUN may own: unicast,
 * not loopback, not unspecified, not link-local (IPv6), with a prefix that leaves room for
 * peers (1-31 for IPv4, 1-127 for IPv6). nullopt for anything else.
 */
std::optional<IpPrefix> parse_prefix(std::string_view text, int family);

/* "100.64.0.1:80", "[fd5e:b0b0::1]:80". */
std::string format_endpoint(const IpPrefix &p, unsigned port);

/* strerror without the thread-safety caveat: "Permission denied", or "errno 1234". */
std::string errno_text(int err);

} // namespace shoal::bumblebee::detail
