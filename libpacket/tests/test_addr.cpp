// Addr/Endpoint text and sockaddr conversions, and the spread of the flow-table hashes.
#include <catch.hpp>

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include <arpa/inet.h>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

TEST_CASE("Addr constructors and accessors", "[addr]")
{
	const Addr a = Addr::v4(0xC0000201);
	CHECK(a.family == AF_INET);
	CHECK(a.size() == 4);
	CHECK(a.v4_host() == 0xC0000201);
	CHECK(a.to_string() == "192.0.2.1");
	CHECK(a == v4("192.0.2.1"));
	const std::uint8_t four[] = {198, 51, 100, 7};
	CHECK(Addr::v4_bytes(four).to_string() == "198.51.100.7");
	std::uint8_t sixteen[16] = {0x20, 0x01, 0x0d, 0xb8};
	sixteen[15] = 1;
	const Addr b = Addr::v6_bytes(sixteen);
	CHECK(b.family == AF_INET6);
	CHECK(b.size() == 16);
	CHECK(b.to_string() == "2001:db8::1");
	CHECK(a != b);
}

TEST_CASE("Addr::parse and to_string (RFC 5952)", "[addr]")
{
	const std::pair<const char *, const char *> cases[] = {
		{"0.0.0.0", "0.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
		{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
		{"2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"},
		{"::", "::"},
		{"::1", "::1"},
		{"::ffff:192.0.2.1", "::ffff:192.0.2.1"},
		{"fe80::1:2:3:4", "fe80::1:2:3:4"},
		{"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
	};
	for (const auto &[in, out] : cases) {
		auto a = Addr::parse(in);
		REQUIRE(a.has_value());
		CHECK(a->to_string() == out);
		CHECK(Addr::parse(a->to_string()) == a);
	}
	for (const char *bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4:80", "[::1]", "fe80::1%eth0", "::g",
				" 1.2.3.4", "1.2.3.4 ", "01.2.3.4", "2001:db8::1::2", "localhost"}) {
		INFO(bad);
		CHECK_FALSE(Addr::parse(bad).has_value());
	}
	CHECK_FALSE(Addr::parse(std::string("1.2.3.4\0junk", 12)).has_value());
	CHECK_FALSE(Addr::parse(std::string(100, '1')).has_value());
}

TEST_CASE("Endpoint text and sockaddr round trips", "[addr]")
{
	const Endpoint e4{v4("198.51.100.1"), 80};
	const Endpoint e6{v6("2001:db8::1"), 65535};
	CHECK(e4.to_string() == "198.51.100.1:80");
	CHECK(e6.to_string() == "[2001:db8::1]:65535");
	CHECK(Endpoint{v6("::"), 0}.to_string() == "[::]:0");

	for (const auto &e : {e4, e6}) {
		sockaddr_storage ss;
		const socklen_t len = e.to_sockaddr(ss);
		CHECK(len == (e.addr.family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)));
		CHECK(ss.ss_family == e.addr.family);
		auto back = Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&ss), len);
		REQUIRE(back.has_value());
		CHECK(*back == e);
		CHECK_FALSE(Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&ss), len - 1).has_value());
	}
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(443);
	inet_pton(AF_INET, "203.0.113.9", &sin.sin_addr);
	auto e = Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&sin), sizeof(sin));
	REQUIRE(e.has_value());
	CHECK(e->to_string() == "203.0.113.9:443");
	sockaddr un{};
	un.sa_family = AF_UNIX;
	CHECK_FALSE(Endpoint::from_sockaddr(&un, sizeof(un)).has_value());
	CHECK_FALSE(Endpoint::from_sockaddr(nullptr, 0).has_value());
	CHECK_FALSE(Endpoint::from_sockaddr(&un, 1).has_value());
}

namespace {

/* How unevenly n keys fall into 2^bits buckets by their low bits: the largest bucket over the mean. */
template <typename T, typename H>
double worst_bucket(const std::vector<T> &keys, H hash, int bits)
{
	std::vector<std::size_t> buckets(std::size_t{1} << bits);
	for (const auto &k : keys)
		++buckets[hash(k) & (buckets.size() - 1)];
	const double mean = static_cast<double>(keys.size()) / static_cast<double>(buckets.size());
	return static_cast<double>(*std::max_element(buckets.begin(), buckets.end())) / mean;
}

} // namespace

TEST_CASE("hashes spread structured keys over the low bits", "[addr][hash]")
{
	/* The worst case for a weak hash: one client, sequential ports, one server. */
	std::vector<FlowKey> seq_ports;
	for (std::uint32_t port = 0; port < 65536; ++port)
		seq_ports.push_back({proto_tcp, {v4("10.0.0.1"), static_cast<std::uint16_t>(port)}, {v4("192.0.2.1"), 443}});
	/* And sequential addresses in a /16 with a fixed port, in both families. */
	std::vector<FlowKey> seq_addrs;
	for (std::uint32_t i = 0; i < 65536; ++i) {
		seq_addrs.push_back({proto_udp, {Addr::v4(0x0A000000 | i), 5353}, {v4("192.0.2.1"), 53}});
		Addr a = v6("2001:db8::");
		a.bytes[14] = static_cast<std::uint8_t>(i >> 8);
		a.bytes[15] = static_cast<std::uint8_t>(i);
		seq_addrs.push_back({proto_udp, {a, 5353}, {v6("2001:db8:1::1"), 53}});
	}
	/* A random function's fullest bucket stays within ~4 standard deviations of the mean. */
	for (int bits : {6, 8, 10}) {
		INFO("bits " << bits);
		CHECK(worst_bucket(seq_ports, FlowKeyHash{}, bits) < 1.6);
		CHECK(worst_bucket(seq_addrs, FlowKeyHash{}, bits) < 1.6);
	}
	/* n keys in n buckets: a random function leaves 1/e of them empty. */
	std::vector<std::size_t> buckets(65536);
	for (const auto &k : seq_ports)
		++buckets[FlowKeyHash{}(k) & 0xFFFF];
	const auto empty = std::count(buckets.begin(), buckets.end(), std::size_t{0});
	CHECK(empty > 65536 * 0.36);
	CHECK(empty < 65536 * 0.38);
	std::vector<Endpoint> endpoints;
	for (const auto &k : seq_addrs)
		endpoints.push_back(k.src);
	CHECK(worst_bucket(endpoints, EndpointHash{}, 12) < 2.0);

	/* Distinct keys, distinct 64-bit hashes (a collision here would be astonishing). */
	std::unordered_set<std::size_t> seen;
	for (const auto &k : seq_addrs)
		seen.insert(FlowKeyHash{}(k));
	for (const auto &k : seq_ports)
		seen.insert(FlowKeyHash{}(k));
	CHECK(seen.size() == seq_addrs.size() + seq_ports.size());

	/* A key and its reverse, and the same bytes as another protocol or family, differ. */
	const FlowKey k{proto_tcp, {v4("10.0.0.1"), 1000}, {v4("10.0.0.2"), 2000}};
	CHECK(FlowKeyHash{}(k) != FlowKeyHash{}(k.reversed()));
	FlowKey k_udp = k;
	k_udp.proto = proto_udp;
	CHECK(FlowKeyHash{}(k) != FlowKeyHash{}(k_udp));
	FlowKey k_v6 = k;
	k_v6.src.addr.family = k_v6.dst.addr.family = AF_INET6;
	CHECK(FlowKeyHash{}(k) != FlowKeyHash{}(k_v6));

	std::unordered_map<FlowKey, int, FlowKeyHash> table;
	for (std::size_t i = 0; i < seq_ports.size(); ++i)
		table[seq_ports[i]] = static_cast<int>(i);
	CHECK(table.at(seq_ports[777]) == 777);
}
