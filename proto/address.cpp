// Parsing and formatting of wire addresses: "ip", "ip:port", "[ipv6]:port" and "lo-hi" port ranges.
#include <shoal/proto/address.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace shoal::proto {

namespace {

/* Strict decimal: 1-5 digits, no sign, no leading zero unless the number is "0". */
std::optional<std::uint32_t> parse_port_number(std::string_view text)
{
	if (text.empty() || text.size() > 5)
		return std::nullopt;
	if (text.size() > 1 && text[0] == '0')
		return std::nullopt;
	std::uint32_t value = 0;
	for (char c : text) {
		if (c < '0' || c > '9')
			return std::nullopt;
		value = value * 10 + std::uint32_t(c - '0');
	}
	if (value > 65535)
		return std::nullopt;
	return value;
}

/* inet_pton needs a NUL-terminated string; the copy also rejects embedded NULs. */
bool copy_for_pton(std::string_view text, char (&buf)[INET6_ADDRSTRLEN])
{
	if (text.empty() || text.size() >= sizeof(buf))
		return false;
	if (text.find('\0') != std::string_view::npos)
		return false;
	std::memcpy(buf, text.data(), text.size());
	buf[text.size()] = '\0';
	return true;
}

std::optional<sockaddr_storage> parse_ipv4(std::string_view text)
{
	char buf[INET6_ADDRSTRLEN];
	if (!copy_for_pton(text, buf))
		return std::nullopt;
	sockaddr_storage ss{};
	auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
	if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
		return std::nullopt;
	sin->sin_family = AF_INET;
	return ss;
}

std::optional<sockaddr_storage> parse_ipv6(std::string_view text)
{
	char buf[INET6_ADDRSTRLEN];
	if (!copy_for_pton(text, buf))
		return std::nullopt;
	sockaddr_storage ss{};
	auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
		return std::nullopt;
	sin6->sin6_family = AF_INET6;
	return ss;
}

void set_port(sockaddr_storage &ss, std::uint16_t port)
{
	if (ss.ss_family == AF_INET)
		reinterpret_cast<sockaddr_in *>(&ss)->sin_port = htons(port);
	else if (ss.ss_family == AF_INET6)
		reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port = htons(port);
}

/* Copies a caller's sockaddr of length len into storage, refusing lengths too short for its family. */
std::optional<sockaddr_storage> to_storage(const sockaddr *addr, socklen_t len)
{
	if (addr == nullptr || len < socklen_t(sizeof(sa_family_t)))
		return std::nullopt;
	sockaddr_storage ss{};
	if (addr->sa_family == AF_INET && len >= socklen_t(sizeof(sockaddr_in)))
		std::memcpy(&ss, addr, sizeof(sockaddr_in));
	else if (addr->sa_family == AF_INET6 && len >= socklen_t(sizeof(sockaddr_in6)))
		std::memcpy(&ss, addr, sizeof(sockaddr_in6));
	else
		return std::nullopt;
	return ss;
}

} // namespace

std::optional<PortRange> parse_port_range(std::string_view text)
{
	auto dash = text.find('-');
	if (dash == std::string_view::npos)
		return std::nullopt;
	auto lo = parse_port_number(text.substr(0, dash));
	auto hi = parse_port_number(text.substr(dash + 1));
	if (!lo || !hi || *lo == 0 || *hi == 0 || *lo > *hi)
		return std::nullopt;
	return PortRange{std::uint16_t(*lo), std::uint16_t(*hi)};
}

std::string format_port_range(PortRange range)
{
	return std::to_string(range.lo) + "-" + std::to_string(range.hi);
}

std::optional<sockaddr_storage> parse_ip(std::string_view text)
{
	/* Decide the family by the presence of ':' so "1.2.3.4" never reaches the IPv6 parser. */
	if (text.find(':') != std::string_view::npos)
		return parse_ipv6(text);
	return parse_ipv4(text);
}

std::optional<sockaddr_storage> parse_endpoint(std::string_view text)
{
	std::optional<sockaddr_storage> ss;
	std::string_view port_text;
	if (!text.empty() && text[0] == '[') {
		auto close = text.find(']');
		if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
			return std::nullopt;
		ss = parse_ipv6(text.substr(1, close - 1));
		port_text = text.substr(close + 2);
	} else {
		/* Unbracketed means IPv4: exactly one ':' separating address and port. */
		auto colon = text.find(':');
		if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos)
			return std::nullopt;
		ss = parse_ipv4(text.substr(0, colon));
		port_text = text.substr(colon + 1);
	}
	if (!ss)
		return std::nullopt;
	auto port = parse_port_number(port_text);
	if (!port)
		return std::nullopt;
	set_port(*ss, std::uint16_t(*port));
	return ss;
}

std::string format_ip(const sockaddr_storage &addr)
{
	char buf[INET6_ADDRSTRLEN] = {};
	if (addr.ss_family == AF_INET) {
		auto *sin = reinterpret_cast<const sockaddr_in *>(&addr);
		if (inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)) == nullptr)
			return {};
		return buf;
	}
	if (addr.ss_family == AF_INET6) {
		auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&addr);
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)) == nullptr)
			return {};
		return buf;
	}
	return {};
}

std::string format_ip(const sockaddr *addr, socklen_t len)
{
	auto ss = to_storage(addr, len);
	return ss ? format_ip(*ss) : std::string();
}

std::uint16_t endpoint_port(const sockaddr_storage &addr)
{
	if (addr.ss_family == AF_INET)
		return ntohs(reinterpret_cast<const sockaddr_in *>(&addr)->sin_port);
	if (addr.ss_family == AF_INET6)
		return ntohs(reinterpret_cast<const sockaddr_in6 *>(&addr)->sin6_port);
	return 0;
}

std::string format_endpoint(const sockaddr_storage &addr)
{
	std::string ip = format_ip(addr);
	if (ip.empty())
		return {};
	std::string port = std::to_string(endpoint_port(addr));
	if (addr.ss_family == AF_INET6)
		return "[" + ip + "]:" + port;
	return ip + ":" + port;
}

std::string format_endpoint(const sockaddr *addr, socklen_t len)
{
	auto ss = to_storage(addr, len);
	return ss ? format_endpoint(*ss) : std::string();
}

bool same_endpoint(const sockaddr_storage &a, const sockaddr_storage &b)
{
	if (a.ss_family != b.ss_family)
		return false;
	if (a.ss_family == AF_INET) {
		auto *x = reinterpret_cast<const sockaddr_in *>(&a);
		auto *y = reinterpret_cast<const sockaddr_in *>(&b);
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a.ss_family == AF_INET6) {
		auto *x = reinterpret_cast<const sockaddr_in6 *>(&a);
		auto *y = reinterpret_cast<const sockaddr_in6 *>(&b);
		return x->sin6_port == y->sin6_port &&
		       std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(in6_addr)) == 0;
	}
	return false;
}

} // namespace shoal::proto
