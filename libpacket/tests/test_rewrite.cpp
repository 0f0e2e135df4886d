// set_src/set_dst: random NAT rewrites must leave exactly the bytes a full recomputation would.
#include <catch.hpp>

#include <algorithm>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

namespace {

enum class Kind { tcp, udp, echo };

Addr random_addr(std::mt19937_64 &rng, bool is_v6)
{
	Addr a;
	a.family = is_v6 ? AF_INET6 : AF_INET;
	for (std::size_t i = 0; i < a.size(); ++i)
		a.bytes[i] = static_cast<std::uint8_t>(rng());
	/* Now and then an address full of 0xFF or 0x00 bytes, which pushes sums to the corners. */
	if (rng() % 8 == 0)
		std::fill(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()),
			  static_cast<std::uint8_t>(rng() % 2 ? 0xFF : 0x00));
	return a;
}

std::uint16_t random_port(std::mt19937_64 &rng)
{
	switch (rng() % 6) {
	case 0:
		return 0;
	case 1:
		return 0xFFFF;
	default:
		return static_cast<std::uint16_t>(rng());
	}
}

/* A packet as the reference builds it; udp_check_zero leaves a UDP checksum of 0 (IPv4 "none"). */
struct Spec {
	bool is_v6 = false;
	Kind kind = Kind::tcp;
	Endpoint src, dst;
	std::uint8_t echo_type = 8;
	Bytes payload;
	bool udp_check_zero = false;
	bool negative_zero = false; /* store 0xFFFF where the checksum computes to 0 (TCP/ICMP) */
};

Transport transport_of(const Spec &s)
{
	switch (s.kind) {
	case Kind::tcp:
		return tcp(s.src.port, s.dst.port, 0x01020304, 0x0a0b0c0d, tcp_ack | tcp_psh, s.payload);
	case Kind::udp:
		return udp(s.src.port, s.dst.port, s.payload);
	case Kind::echo:
	default:
		return icmp(s.is_v6, s.echo_type, 0, s.src.port, 7, s.payload);
	}
}

Bytes build(const Spec &s)
{
	Transport t = transport_of(s);
	Bytes b = s.is_v6 ? ipv6(s.src.addr, s.dst.addr, t) : ipv4(s.src.addr, s.dst.addr, t);
	const std::size_t l4 = s.is_v6 ? 40 : 20;
	const std::size_t at = l4 + check_offset(t.proto);
	if (s.kind == Kind::udp && s.udp_check_zero)
		put16(&b[at], 0);
	if (s.kind != Kind::udp && s.negative_zero && get16(&b[at]) == 0)
		put16(&b[at], 0xFFFF);
	return b;
}

/* The port value that makes the spec's transport checksum compute to zero. */
std::uint16_t port_for_zero_checksum(Spec s, bool source)
{
	(source ? s.src.port : s.dst.port) = 0;
	if (s.kind == Kind::echo)
		s.src.port = s.dst.port = 0;
	Transport t = transport_of(s);
	Bytes b = s.is_v6 ? ipv6(s.src.addr, s.dst.addr, t) : ipv4(s.src.addr, s.dst.addr, t);
	const std::size_t l4 = s.is_v6 ? 40 : 20;
	/* checksum c0 = ~S0; a word X with S0 + X = 0xFFFF makes it zero, and X = c0. */
	return ref_transport_checksum(b, l4, t.proto, s.is_v6, false);
}

} // namespace

TEST_CASE("random rewrites equal full recomputation", "[rewrite]")
{
	std::mt19937_64 rng(1624 * 3);
	int zero_results = 0, negative_zero_inputs = 0, udp_none = 0;
	for (int iter = 0; iter < 30000; ++iter) {
		Spec s;
		s.is_v6 = rng() % 2;
		s.kind = static_cast<Kind>(rng() % 3);
		s.src = {random_addr(rng, s.is_v6), random_port(rng)};
		s.dst = {random_addr(rng, s.is_v6), random_port(rng)};
		if (s.kind == Kind::echo) {
			s.echo_type = s.is_v6 ? (rng() % 2 ? 128 : 129) : (rng() % 2 ? 8 : 0);
			s.dst.port = s.src.port;
		}
		s.payload = random_bytes(rng, rng() % 3 == 0 ? 0 : rng() % 64);
		s.udp_check_zero = !s.is_v6 && s.kind == Kind::udp && rng() % 4 == 0;
		s.negative_zero = rng() % 2;
		/* A quarter of the inputs have a checksum that computes to zero. */
		if (rng() % 4 == 0) {
			const std::uint16_t port = port_for_zero_checksum(s, true);
			s.src.port = port;
			if (s.kind == Kind::echo)
				s.dst.port = port;
		}

		Bytes b = build(s);
		auto p = parse(b.data(), b.size());
		REQUIRE(p.has_value());
		REQUIRE(verify_transport_checksum(*p));
		if (get16(&b[p->l3_len + check_offset(p->proto)]) == 0xFFFF)
			++negative_zero_inputs;

		/* 0: source only, 1: destination only, 2: both. */
		const int which = static_cast<int>(rng() % 3);
		Spec want = s;
		want.negative_zero = false;
		Endpoint ns{random_addr(rng, s.is_v6), random_port(rng)};
		Endpoint nd{random_addr(rng, s.is_v6), random_port(rng)};
		/* Half of the single rewrites are steered so the new checksum computes to zero. */
		if (which != 2 && rng() % 2) {
			Spec t = s;
			(which == 0 ? t.src : t.dst) = which == 0 ? ns : nd;
			(which == 0 ? ns : nd).port = port_for_zero_checksum(t, which == 0);
		}
		if (which != 1) {
			want.src = ns;
			if (s.kind == Kind::echo)
				want.dst.port = ns.port;
		}
		if (which != 0) {
			want.dst = nd;
			if (s.kind == Kind::echo)
				want.src.port = nd.port;
		}
		const Bytes expected = build(want);

		if (which != 1)
			set_src(*p, ns);
		if (which != 0)
			set_dst(*p, nd);

		const std::size_t at = p->l3_len + check_offset(p->proto);
		if (get16(&expected[at]) == 0 || get16(&expected[at]) == 0xFFFF)
			++zero_results;
		if (s.udp_check_zero)
			++udp_none;
		INFO("iteration " << iter << " kind " << static_cast<int>(s.kind) << " v6 " << s.is_v6 << " which " << which
				  << " got " << get16(&b[at]) << " want " << get16(&expected[at]));
		REQUIRE(b == expected);
		REQUIRE(p->src() == want.src);
		REQUIRE(p->dst().addr == want.dst.addr);
		REQUIRE(p->dport == want.dst.port);
		auto again = parse(b.data(), b.size());
		REQUIRE(again.has_value());
		REQUIRE(again->key() == p->key());
		REQUIRE(verify_transport_checksum(*again));
	}
	/* The corners were actually reached. */
	CHECK(zero_results > 1000);
	CHECK(negative_zero_inputs > 500);
	CHECK(udp_none > 500);
}

TEST_CASE("UDP over IPv4 without checksum stays without", "[rewrite]")
{
	Bytes b = ipv4(v4("10.1.1.1"), v4("10.2.2.2"), udp(1111, 53, {1, 2, 3, 4, 5}));
	put16(&b[26], 0);
	auto p = parse(b.data(), b.size());
	REQUIRE(p.has_value());
	set_src(*p, {v4("198.51.100.77"), 40001});
	set_dst(*p, {v4("203.0.113.9"), 5353});
	CHECK(get16(&b[26]) == 0);
	auto again = parse(b.data(), b.size()); /* the IP header checksum still verifies */
	REQUIRE(again.has_value());
	CHECK(again->src().to_string() == "198.51.100.77:40001");
	CHECK(again->dst().to_string() == "203.0.113.9:5353");
}

TEST_CASE("ICMP: echo ids and the pseudo-header", "[rewrite]")
{
	SECTION("ICMPv4 checksum ignores addresses")
	{
		Bytes b = ipv4(v4("10.1.1.1"), v4("10.2.2.2"), icmp(false, 8, 0, 0x1111, 1, {1, 2, 3}));
		const std::uint16_t before = get16(&b[22]);
		auto p = parse(b.data(), b.size());
		REQUIRE(p.has_value());
		set_dst(*p, {v4("192.0.2.200"), 0x1111});
		CHECK(get16(&b[22]) == before);
		set_src(*p, {v4("192.0.2.100"), 0x2222});
		CHECK(p->sport == 0x2222);
		CHECK(p->dport == 0x2222);
		CHECK(get16(&b[24]) == 0x2222);
		CHECK(verify_transport_checksum(*p));
		CHECK(b == ipv4(v4("192.0.2.100"), v4("192.0.2.200"), icmp(false, 8, 0, 0x2222, 1, {1, 2, 3})));
	}
	SECTION("ICMPv6 errors: addresses change the checksum, there is no id")
	{
		Bytes b = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), icmp(true, 1, 4, 0x7777, 0x8888, Bytes(48, 9)));
		auto p = parse(b.data(), b.size());
		REQUIRE(p.has_value());
		set_src(*p, {v6("2001:db8:aaaa::1"), 999});
		CHECK(verify_transport_checksum(*p));
		CHECK(get16(&b[44]) == 0x7777);
		CHECK(b == ipv6(v6("2001:db8:aaaa::1"), v6("2001:db8::2"), icmp(true, 1, 4, 0x7777, 0x8888, Bytes(48, 9))));
	}
}

TEST_CASE("a rewrite to the other family is refused", "[rewrite]")
{
	Bytes b = ipv4(v4("10.1.1.1"), v4("10.2.2.2"), tcp(1, 2, 3, 4, tcp_syn));
	const Bytes before = b;
	auto p = parse(b.data(), b.size());
	REQUIRE(p.has_value());
	set_src(*p, {v6("2001:db8::1"), 5});
	set_dst(*p, {v6("2001:db8::1"), 5});
	CHECK(b == before);
	CHECK(p->sport == 1);
}

TEST_CASE("rewriting the packet quoted in an ICMP error", "[rewrite][embedded]")
{
	/* NAT of an error about a translated flow: the quoted packet gets the original addresses back. */
	const Bytes inner = ipv4(v4("198.51.100.1"), v4("203.0.113.5"), tcp(40000, 443, 77, 0, tcp_syn));
	Bytes b = ipv4(v4("203.0.113.254"), v4("198.51.100.1"), icmp(false, 3, 1, 0, 0, inner));
	auto outer = parse(b.data(), b.size());
	REQUIRE(outer.has_value());
	auto e = parse_embedded(*outer);
	REQUIRE(e.has_value());
	set_src(*e, {v4("10.0.0.5"), 12345});
	set_dst(*outer, {v4("10.0.0.5"), 0});
	fill_checksums(*outer);
	CHECK(b == ipv4(v4("203.0.113.254"), v4("10.0.0.5"),
			icmp(false, 3, 1, 0, 0, ipv4(v4("10.0.0.5"), v4("203.0.113.5"), tcp(12345, 443, 77, 0, tcp_syn)))));
}
