// RelayEnds: real TCP (IPv4/IPv6) or Unix connections for splicer to relay between.
#include "relay_world.h"

#include <catch.hpp>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

namespace shoal::test {

namespace {

/* A connected pair over a real listener on loopback: (connecting side, accepted side). */
std::pair<UniqueFd, UniqueFd> tcp_connection(int family)
{
	UniqueFd listener(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(listener.is_valid());
	sockaddr_storage ss{};
	socklen_t len;
	if (family == AF_INET) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(sockaddr_in);
	} else {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof(sockaddr_in6);
	}
	REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr *>(&ss), len) == 0);
	REQUIRE(::listen(listener.get(), 1) == 0);
	REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	UniqueFd out(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(::connect(out.get(), reinterpret_cast<sockaddr *>(&ss), len) == 0);
	UniqueFd in(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(in.is_valid());
	return {std::move(out), std::move(in)};
}

std::pair<UniqueFd, UniqueFd> unix_connection()
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

} // namespace

RelayEnds make_relay_ends(int family)
{
	RelayEnds e;
	auto first = family == AF_UNIX ? unix_connection() : tcp_connection(family);
	auto second = family == AF_UNIX ? unix_connection() : tcp_connection(family);
	e.client = std::move(first.first);
	e.a = std::move(first.second);
	e.b = std::move(second.first);
	e.server = std::move(second.second);
	return e;
}

std::string start_relay(Client &c, RelayEnds &ends, const nlohmann::json &fields)
{
	int fds[2] = {ends.a.get(), ends.b.get()};
	auto r = c.call("splice", fields, fds);
	REQUIRE(r);
	INFO(r->json.dump());
	REQUIRE(r->op() == "accepted");
	/* The relay lives in splicer now: a proxy closes its copies, and so do we. */
	ends.a.reset();
	ends.b.reset();
	return r->json.at("task").get<std::string>();
}


std::string pattern(std::uint64_t seed, std::size_t offset, std::size_t n)
{
	/*
	 * A prime-length table of random bytes, read at a per-stream offset: cheap enough for
	 * hundreds of MiB (even under ASan), and a lost, repeated or reordered chunk shows up
	 * because no power-of-two shift lines the table up with itself.
	 */
	static constexpr std::size_t kPeriod = 65521;
	static const std::string table = [] {
		std::string t(kPeriod, '\0');
		std::uint64_t x = 0x2545F4914F6CDD1DULL;
		for (char &c : t) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			c = static_cast<char>(x >> 56);
		}
		return t;
	}();
	std::string out;
	out.reserve(n);
	std::size_t pos = (offset + seed * 4099) % kPeriod;
	while (out.size() < n) {
		std::size_t take = std::min(n - out.size(), kPeriod - pos);
		out.append(table, pos, take);
		pos = 0;
	}
	return out;
}

} // namespace shoal::test
