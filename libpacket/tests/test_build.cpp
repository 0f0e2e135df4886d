// Builders: every packet they make parses, verifies, and says what RFC 793/792/4443 require.
#include <catch.hpp>

#include <algorithm>
#include <cstring>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

namespace {

Packet must_parse(std::uint8_t *data, std::size_t len)
{
	auto r = parse(data, len);
	REQUIRE(r.has_value());
	return *r;
}

} // namespace

TEST_CASE("RST for a SYN (no ACK): seq 0, ack = seq + 1", "[build][rst]")
{
	for (bool is_v6 : {false, true}) {
		Bytes syn = is_v6 ? ipv6(v6("2001:db8::1"), v6("2001:db8::2"), tcp(40000, 22, 0xFFFFFFFF, 0, tcp_syn))
				  : ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(40000, 22, 0xFFFFFFFF, 0, tcp_syn));
		Packet to = must_parse(syn.data(), syn.size());
		std::uint8_t out[100];
		const std::size_t n = build_tcp_rst(out, sizeof(out), to);
		REQUIRE(n == (is_v6 ? 60u : 40u));
		Packet r = must_parse(out, n);
		CHECK(verify_transport_checksum(r));
		CHECK(r.key() == to.key().reversed());
		CHECK(r.tcp_flags == (tcp_rst | tcp_ack));
		CHECK(r.seq == 0);
		CHECK(r.ack == 0); /* 0xFFFFFFFF + 1 wraps */
		CHECK(r.ttl == 64);
		CHECK(r.payload_len() == 0);
		CHECK(r.l4_header_len == 20);
		CHECK(build_tcp_rst(out, n - 1, to) == 0);
	}
}

TEST_CASE("RST for data with FIN and no ACK counts payload, SYN and FIN", "[build][rst]")
{
	Bytes pkt = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(1, 2, 1000, 0, tcp_syn | tcp_fin, Bytes(10, 1)));
	Packet to = must_parse(pkt.data(), pkt.size());
	std::uint8_t out[40];
	REQUIRE(build_tcp_rst(out, sizeof(out), to) == 40);
	Packet r = must_parse(out, 40);
	CHECK(r.ack == 1012);
	CHECK(r.seq == 0);
}

TEST_CASE("RST for a segment with ACK: seq = its ack, no ACK flag", "[build][rst]")
{
	Bytes pkt = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), tcp(5555, 80, 1, 0xDEADBEEF, tcp_ack | tcp_psh, Bytes(100, 2)),
			 {ext_options(0)});
	Packet to = must_parse(pkt.data(), pkt.size());
	std::uint8_t out[60];
	REQUIRE(build_tcp_rst(out, sizeof(out), to) == 60);
	Packet r = must_parse(out, 60);
	CHECK(r.tcp_flags == tcp_rst);
	CHECK(r.seq == 0xDEADBEEF);
	CHECK(r.ack == 0);
	CHECK(r.src() == to.dst());
	CHECK(r.dst() == to.src());
	CHECK(verify_transport_checksum(r));
}

TEST_CASE("no RST for a RST or for non-TCP; built in place over the original", "[build][rst]")
{
	Bytes rst = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(1, 2, 3, 4, tcp_rst | tcp_ack));
	Packet to = must_parse(rst.data(), rst.size());
	std::uint8_t out[100];
	CHECK(build_tcp_rst(out, sizeof(out), to) == 0);
	Bytes u = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(1, 2));
	Packet up = must_parse(u.data(), u.size());
	CHECK(build_tcp_rst(out, sizeof(out), up) == 0);

	Bytes syn = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(1234, 80, 99, 0, tcp_syn, Bytes(30, 3)));
	Packet s = must_parse(syn.data(), syn.size());
	REQUIRE(build_tcp_rst(syn.data(), syn.size(), s) == 40);
	Packet r = must_parse(syn.data(), 40);
	CHECK(r.src().to_string() == "192.0.2.2:80");
	CHECK(r.dst().to_string() == "192.0.2.1:1234");
	CHECK(r.ack == 99 + 30 + 1);
	CHECK(verify_transport_checksum(r));
}

TEST_CASE("ICMP unreachable quotes the packet and parses back to its flow", "[build][icmp]")
{
	const Addr router4 = v4("203.0.113.1");
	const Addr router6 = v6("2001:db8:ffff::1");
	const std::vector<Bytes> abouts = {
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), udp(5000, 53, Bytes(10, 1))),
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), tcp(5000, 443, 1, 2, tcp_syn, Bytes(1400, 1))),
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), icmp(false, 8, 0, 0x4242, 1, Bytes(56, 1))),
		ipv6(v6("2001:db8::1"), v6("2001:db8:1::2"), udp(5000, 53, Bytes(10, 1))),
		ipv6(v6("2001:db8::1"), v6("2001:db8:1::2"), tcp(5000, 443, 1, 2, tcp_ack, Bytes(1400, 1)), {ext_options(0, 3)}),
		ipv6(v6("2001:db8::1"), v6("2001:db8:1::2"), icmp(true, 128, 0, 0x4242, 1, Bytes(56, 1))),
	};
	for (const auto &a : abouts) {
		Bytes about = a;
		Packet p = must_parse(about.data(), about.size());
		const bool is_v6 = p.family == AF_INET6;
		const std::size_t limit = is_v6 ? 1280 : 576;
		std::uint8_t out[1500];
		const std::size_t n = build_icmp_unreachable(out, sizeof(out), p, is_v6 ? router6 : router4, is_v6 ? 4 : 3);
		REQUIRE(n == std::min(limit, (is_v6 ? 48 : 28) + about.size()));
		Packet e = must_parse(out, n);
		CHECK(e.is_icmp_error());
		CHECK(e.icmp_type == (is_v6 ? 1 : 3));
		CHECK(e.icmp_code == (is_v6 ? 4 : 3));
		CHECK(e.ttl == 64);
		CHECK(e.src_addr() == (is_v6 ? router6 : router4));
		CHECK(e.dst_addr() == p.src_addr());
		CHECK(verify_transport_checksum(e));
		CHECK(std::equal(e.payload(), e.payload() + e.payload_len(), about.begin()));
		auto q = parse_embedded(e);
		REQUIRE(q.has_value());
		CHECK(q->key() == p.key());
		CHECK(q->len == n - (is_v6 ? 48 : 28));
		CHECK(build_icmp_unreachable(out, n - 1, p, is_v6 ? router6 : router4, 0) == 0);
		/* Never an error about an error. */
		CHECK(build_icmp_unreachable(out + 0, sizeof(out), e, is_v6 ? router6 : router4, 0) == 0);
		/* The wrong family for `from`. */
		CHECK(build_icmp_unreachable(out, sizeof(out), p, is_v6 ? router4 : router6, 0) == 0);
	}
}

TEST_CASE("ICMP unreachable built in place over the packet it is about", "[build][icmp]")
{
	Bytes b = ipv4(v4("192.0.2.1"), v4("198.51.100.2"), udp(5000, 53, Bytes(1000, 1)));
	const Bytes copy = b;
	b.resize(1600);
	Packet p = must_parse(b.data(), b.size());
	const std::size_t n = build_icmp_unreachable(b.data(), b.size(), p, v4("198.51.100.2"), 3);
	REQUIRE(n == 576);
	Packet e = must_parse(b.data(), n);
	CHECK(verify_transport_checksum(e));
	CHECK(std::equal(e.payload(), e.payload() + 548, copy.begin()));
	auto q = parse_embedded(e);
	REQUIRE(q.has_value());
	CHECK(q->dst().to_string() == "198.51.100.2:53");
}

TEST_CASE("build_udp", "[build][udp]")
{
	const Bytes payload = {'p', 'i', 'n', 'g'};
	std::uint8_t out[2000];
	SECTION("IPv4 matches the reference byte for byte (apart from the IP ID)")
	{
		const std::size_t n = build_udp(out, sizeof(out), {v4("192.0.2.1"), 5353}, {v4("224.0.0.251"), 5353},
						payload.data(), payload.size(), 255);
		REQUIRE(n == 32);
		Packet p = must_parse(out, n);
		CHECK(p.ttl == 255);
		CHECK(p.src().to_string() == "192.0.2.1:5353");
		CHECK(p.dst().to_string() == "224.0.0.251:5353");
		CHECK(verify_transport_checksum(p));
		CHECK(std::equal(p.payload(), p.payload() + p.payload_len(), payload.begin(), payload.end()));
		Bytes ref = ipv4(v4("192.0.2.1"), v4("224.0.0.251"), udp(5353, 5353, payload), V4Options{255, 0, {}, true});
		Bytes got(out, out + n);
		got[4] = ref[4];
		got[5] = ref[5];
		put16(&got[10], 0);
		put16(&got[10], ref_checksum(got.data(), 20));
		CHECK(got == ref);
	}
	SECTION("IPv6 matches the reference")
	{
		const std::size_t n = build_udp(out, sizeof(out), {v6("2001:db8::1"), 1}, {v6("ff02::fb"), 5353},
						payload.data(), payload.size());
		REQUIRE(n == 52);
		Bytes ref = ipv6(v6("2001:db8::1"), v6("ff02::fb"), udp(1, 5353, payload));
		ref[1] = 0; /* the fixture sets a flow label */
		CHECK(Bytes(out, out + n) == ref);
	}
	SECTION("empty payload, payload in place, limits")
	{
		CHECK(build_udp(out, sizeof(out), {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, nullptr, 0) == 28);
		CHECK(build_udp(out, 27, {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, nullptr, 0) == 0);
		CHECK(build_udp(out, sizeof(out), {v4("192.0.2.1"), 1}, {v6("2001:db8::2"), 2}, nullptr, 0) == 0);
		std::memcpy(out + 48, "in place", 8);
		const std::size_t n = build_udp(out, sizeof(out), {v6("2001:db8::1"), 1}, {v6("2001:db8::2"), 2}, out + 48, 8);
		REQUIRE(n == 56);
		Packet p = must_parse(out, n);
		CHECK(std::memcmp(p.payload(), "in place", 8) == 0);
		CHECK(verify_transport_checksum(p));

		std::vector<std::uint8_t> big(70000);
		CHECK(build_udp(big.data(), big.size(), {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, big.data(), 65535 - 28) ==
		      65535);
		CHECK(build_udp(big.data(), big.size(), {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, big.data(), 65535 - 27) == 0);
		CHECK(build_udp(big.data(), big.size(), {v6("2001:db8::1"), 1}, {v6("2001:db8::2"), 2}, big.data(), 65535 - 8) ==
		      65535 + 40);
		CHECK(build_udp(big.data(), big.size(), {v6("2001:db8::1"), 1}, {v6("2001:db8::2"), 2}, big.data(), 65535 - 7) == 0);
		Packet maxp = must_parse(big.data(), 65535 + 40);
		CHECK(verify_transport_checksum(maxp));
	}
}

TEST_CASE("build_tcp makes segments that parse, verify and carry their payload", "[build][tcp]")
{
	std::uint8_t out[2000];
	const Bytes payload = {'d', 'a', 't', 'a'};
	for (auto [src, dst] : {std::pair{Endpoint{v4("192.0.2.1"), 40000}, Endpoint{v4("198.51.100.1"), 443}},
				std::pair{Endpoint{v6("2001:db8::1"), 40000}, Endpoint{v6("2001:db8:1::1"), 443}}}) {
		const std::size_t n = build_tcp(out, sizeof(out), src, dst, 1000, 2000, tcp_ack | tcp_psh, 512,
						payload.data(), payload.size());
		REQUIRE(n == (src.addr.family == AF_INET ? 44u : 64u));
		Packet p = must_parse(out, n);
		CHECK(p.proto == proto_tcp);
		CHECK(p.src() == src);
		CHECK(p.dst() == dst);
		CHECK(p.seq == 1000);
		CHECK(p.ack == 2000);
		CHECK(p.tcp_flags == (tcp_ack | tcp_psh));
		CHECK(get16(p.l4 + 14) == 512);
		CHECK(verify_transport_checksum(p));
		CHECK(std::equal(p.payload(), p.payload() + p.payload_len(), payload.begin(), payload.end()));
	}
	CHECK(build_tcp(out, 39, {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, 0, 0, tcp_rst) == 0);
	CHECK(build_tcp(out, sizeof(out), {v4("192.0.2.1"), 1}, {v6("2001:db8::2"), 2}, 0, 0, tcp_rst) == 0);
	std::vector<std::uint8_t> big(70000);
	CHECK(build_tcp(big.data(), big.size(), {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, 0, 0, tcp_ack, 0, big.data(),
			65535 - 40) == 65535);
	CHECK(build_tcp(big.data(), big.size(), {v4("192.0.2.1"), 1}, {v4("192.0.2.2"), 2}, 0, 0, tcp_ack, 0, big.data(),
			65535 - 39) == 0);
}
