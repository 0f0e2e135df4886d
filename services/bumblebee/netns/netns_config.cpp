// NetnsConfig: its JSON form (how it reaches the helper and config files) and its validation.
#include "netns.h"
#include "netns_detail.h"

#include <arpa/inet.h>
#include <cstring>
#include <limits>
#include <net/if.h>
#include <netinet/in.h>
#include <stdexcept>

namespace shoal::bumblebee {

namespace detail {

std::optional<IpPrefix> parse_prefix(std::string_view text, int family)
{
	auto slash = text.find('/');
	if (slash == std::string_view::npos)
		return std::nullopt;
	std::string addr(text.substr(0, slash));
	std::string_view len = text.substr(slash + 1);
	if (len.empty() || len.size() > 3 || (len.size() > 1 && len[0] == '0'))
		return std::nullopt;
	unsigned prefixlen = 0;
	for (char c : len) {
		if (c < '0' || c > '9')
			return std::nullopt;
		prefixlen = prefixlen * 10 + static_cast<unsigned>(c - '0');
	}

	IpPrefix p;
	p.family = family;
	p.prefixlen = prefixlen;
	if (::inet_pton(family, addr.c_str(), p.addr) != 1)
		return std::nullopt;

	if (family == AF_INET) {
		/*
		 * Replies to the NAT pool are routed through the TUN by the prefix's connected
		 * route, so a host prefix (/32) would leave them nowhere to go.
		 */
		if (prefixlen < 1 || prefixlen > 31)
			return std::nullopt;
		unsigned char first = p.addr[0];
		/* 0/8 "this network", 127/8 loopback (lo owns it), 224/3 multicast and reserved. */
		if (first == 0 || first == 127 || first >= 224)
			return std::nullopt;
		return p;
	}

	if (prefixlen < 1 || prefixlen > 127)
		return std::nullopt;
	in6_addr a;
	std::memcpy(&a, p.addr, sizeof(a));
	/* Link-local would need a scope id to bind; v4-mapped is IPv4 in disguise. */
	if (IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_MULTICAST(&a) ||
	    IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_V4MAPPED(&a))
		return std::nullopt;
	return p;
}

std::string format_endpoint(const IpPrefix &p, unsigned port)
{
	char buf[INET6_ADDRSTRLEN] = {};
	::inet_ntop(p.family, p.addr, buf, sizeof(buf));
	if (p.family == AF_INET6)
		return "[" + std::string(buf) + "]:" + std::to_string(port);
	return std::string(buf) + ":" + std::to_string(port);
}

std::string errno_text(int err)
{
	const char *desc = ::strerrordesc_np(err);
	return desc ? std::string(desc) : "errno " + std::to_string(err);
}

} // namespace detail

namespace {

[[noreturn]] void bad(const std::string &key, const std::string &why)
{
	throw std::invalid_argument(key + ": " + why);
}

/* The kernel's dev_valid_name(), minus '%' (TUNSETIFF would treat "bb%d" as a template). */
bool valid_ifname(const std::string &name)
{
	if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..")
		return false;
	for (char c : name) {
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '_' || c == '.';
		if (!ok)
			return false;
	}
	return true;
}

long long integer(const nlohmann::json &v, const std::string &key, long long lo, long long hi)
{
	if (!v.is_number_integer())
		bad(key, "must be an integer " + std::to_string(lo) + "-" + std::to_string(hi));
	/* Unsigned values above LLONG_MAX are out of every range here. */
	if (v.is_number_unsigned() && v.get<unsigned long long>() > static_cast<unsigned long long>(hi))
		bad(key, "must be an integer " + std::to_string(lo) + "-" + std::to_string(hi));
	long long n = v.get<long long>();
	if (n < lo || n > hi)
		bad(key, "must be an integer " + std::to_string(lo) + "-" + std::to_string(hi));
	return n;
}

std::string string(const nlohmann::json &v, const std::string &key)
{
	if (!v.is_string())
		bad(key, "must be a string");
	return v.get<std::string>();
}

constexpr long long kMinMtu = 68;      /* IPv4's minimum */
constexpr long long kMinMtu6 = 1280;   /* below it the kernel turns IPv6 off on the device */
constexpr long long kMaxMtu = 65535;   /* the TUN driver's max_mtu */
/* The TUN driver allocates a ring slot per queued packet: keep it sane. */
constexpr long long kMaxTxqueuelen = 1 << 20;

} // namespace

nlohmann::json NetnsConfig::to_json() const
{
	return {
		{"tun_name", tun_name},
		{"mtu", mtu},
		{"txqueuelen", txqueuelen},
		{"inet4", inet4},
		{"inet6", inet6},
		{"port", port},
		{"backlog", backlog},
	};
}

NetnsConfig NetnsConfig::from_json(const nlohmann::json &j)
{
	if (!j.is_object())
		throw std::invalid_argument("netns config: must be a JSON object");
	NetnsConfig c;
	for (const auto &[key, v] : j.items()) {
		if (key == "tun_name")
			c.tun_name = string(v, key);
		else if (key == "mtu")
			c.mtu = static_cast<unsigned>(integer(v, key, kMinMtu, kMaxMtu));
		else if (key == "txqueuelen")
			c.txqueuelen = static_cast<unsigned>(integer(v, key, 1, kMaxTxqueuelen));
		else if (key == "inet4")
			c.inet4 = string(v, key);
		else if (key == "inet6")
			c.inet6 = string(v, key);
		else if (key == "port")
			c.port = static_cast<std::uint16_t>(integer(v, key, 1, 65535));
		else if (key == "backlog")
			c.backlog = static_cast<int>(integer(v, key, 1, std::numeric_limits<int>::max()));
		else
			bad(key, "unknown field");
	}
	c.validate();
	return c;
}

void NetnsConfig::validate() const
{
	if (!valid_ifname(tun_name))
		bad("tun_name", "\"" + tun_name + "\" is not an interface name (1-15 of A-Z a-z 0-9 . _ -)");
	long long min_mtu = inet6.empty() ? kMinMtu : kMinMtu6;
	if (mtu < min_mtu || mtu > kMaxMtu)
		bad("mtu", "must be " + std::to_string(min_mtu) + "-" + std::to_string(kMaxMtu) +
				   (inet6.empty() ? "" : " (IPv6 needs at least 1280)"));
	if (txqueuelen < 1 || txqueuelen > kMaxTxqueuelen)
		bad("txqueuelen", "must be 1-" + std::to_string(kMaxTxqueuelen));
	if (!detail::parse_prefix(inet4, AF_INET))
		bad("inet4", "\"" + inet4 +
				     "\" is not a unicast IPv4 address with a prefix length 1-31, like 100.64.0.1/10");
	if (!inet6.empty() && !detail::parse_prefix(inet6, AF_INET6))
		bad("inet6", "\"" + inet6 +
				     "\" is not a global or unique-local IPv6 address with a prefix length 1-127, "
				     "like fd5e:b0b0::1/64 (or \"\" for no IPv6)");
	if (port == 0)
		bad("port", "must be 1-65535");
	if (backlog < 1)
		bad("backlog", "must be at least 1");
}

} // namespace shoal::bumblebee
