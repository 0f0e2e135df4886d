// parse and parse_embedded: the fields of well-formed packets and the error of every malformed one.
#include <catch.hpp>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

namespace {

ParseError parse_error(Bytes b)
{
	auto r = parse(b.data(), b.size());
	REQUIRE_FALSE(r.has_value());
	return r.error();
}

ParseError parse_error(Bytes b, std::size_t len)
{
	auto r = parse(b.data(), len);
	REQUIRE_FALSE(r.has_value());
	return r.error();
}

void fix_ipv4_checksum(Bytes &b)
{
	const std::size_t ihl = (b[0] & 0x0F) * 4u;
	put16(&b[10], 0);
	put16(&b[10], ref_checksum(b.data(), std::min(ihl, b.size())));
}

/* A SYN as Linux 6.x sends it: MSS, SACK permitted, timestamps, NOP, window scale. */
const Bytes linux_syn_options = {0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x9b, 0x3c, 0x1a, 0x20,
				 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07};

} // namespace

TEST_CASE("IPv4 TCP SYN with options parses into every field", "[parse]")
{
	Bytes b = ipv4(v4("172.16.10.99"), v4("172.16.10.12"), tcp(46712, 443, 0x6b2b6f1a, 0, tcp_syn, {}, linux_syn_options));
	REQUIRE(b.size() == 60);
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	const Packet &p = *r;
	CHECK(p.data == b.data());
	CHECK(p.len == 60);
	CHECK(p.family == AF_INET);
	CHECK(p.l3_len == 20);
	CHECK(p.proto == proto_tcp);
	CHECK(p.l4 == b.data() + 20);
	CHECK(p.l4_len == 40);
	CHECK(p.ttl == 64);
	CHECK(p.sport == 46712);
	CHECK(p.dport == 443);
	CHECK(p.tcp_flags == tcp_syn);
	CHECK(p.seq == 0x6b2b6f1a);
	CHECK(p.ack == 0);
	CHECK(p.l4_header_len == 40);
	CHECK(p.payload_len() == 0);
	CHECK(p.src_addr() == v4("172.16.10.99"));
	CHECK(p.dst_addr() == v4("172.16.10.12"));
	CHECK(p.src().to_string() == "172.16.10.99:46712");
	CHECK(p.dst().to_string() == "172.16.10.12:443");
	CHECK(p.key() == FlowKey{proto_tcp, {v4("172.16.10.99"), 46712}, {v4("172.16.10.12"), 443}});
	CHECK(p.key().reversed().src == p.dst());
	CHECK_FALSE(p.is_icmp_echo());
	CHECK_FALSE(p.is_icmp_error());
	CHECK(verify_transport_checksum(p));
}

TEST_CASE("IPv4 with options, TCP data with PSH|ACK", "[parse]")
{
	V4Options o;
	o.ip_options = {0x01, 0x01, 0x01, 0x00}; /* NOP NOP NOP EOL */
	o.ttl = 3;
	Bytes b = ipv4(v4("192.0.2.1"), v4("198.51.100.2"), tcp(1, 65535, 0xFFFFFFFF, 0x12345678, tcp_psh | tcp_ack, {'h', 'i', '!'}), o);
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	CHECK(r->l3_len == 24);
	CHECK(r->ttl == 3);
	CHECK(r->tcp_flags == (tcp_psh | tcp_ack));
	CHECK(r->seq == 0xFFFFFFFF);
	CHECK(r->ack == 0x12345678);
	CHECK(r->payload_len() == 3);
	CHECK(r->payload()[0] == 'h');
	CHECK(verify_transport_checksum(*r));
}

TEST_CASE("trailing bytes after the IP packet are ignored", "[parse]")
{
	Bytes b = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(53, 5353, {1, 2, 3}));
	const std::size_t real = b.size();
	b.resize(real + 50, 0xEE);
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	CHECK(r->len == real);
	CHECK(r->l4_len == 11);
	CHECK(verify_transport_checksum(*r));
}

TEST_CASE("UDP over IPv4 and IPv6", "[parse]")
{
	Bytes b4 = ipv4(v4("10.0.0.1"), v4("10.0.0.2"), udp(5353, 53, Bytes(100, 7)));
	auto r4 = parse(b4.data(), b4.size());
	REQUIRE(r4.has_value());
	CHECK(r4->proto == proto_udp);
	CHECK(r4->sport == 5353);
	CHECK(r4->dport == 53);
	CHECK(r4->l4_header_len == 8);
	CHECK(r4->payload_len() == 100);
	CHECK(verify_transport_checksum(*r4));

	Bytes b6 = ipv6(v6("2001:db8::1"), v6("2001:db8:ffff::2"), udp(443, 61000, Bytes(1200, 0xAB)), {}, 255);
	auto r6 = parse(b6.data(), b6.size());
	REQUIRE(r6.has_value());
	CHECK(r6->family == AF_INET6);
	CHECK(r6->len == 40 + 8 + 1200);
	CHECK(r6->l3_len == 40);
	CHECK(r6->ttl == 255);
	CHECK(r6->src_addr().to_string() == "2001:db8::1");
	CHECK(r6->dst().to_string() == "[2001:db8:ffff::2]:61000");
	CHECK(verify_transport_checksum(*r6));
}

TEST_CASE("UDP length shorter than the IP payload trims l4_len", "[parse]")
{
	Bytes b = ipv4(v4("10.0.0.1"), v4("10.0.0.2"), udp(1, 2, {9, 9, 9, 9}));
	put16(&b[24], 10); /* 2 of 4 payload bytes are the datagram, 2 are padding */
	put16(&b[26], 0);
	put16(&b[26], ref_transport_checksum(Bytes(b.begin(), b.begin() + 30), 20, proto_udp, false));
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	CHECK(r->len == 32);
	CHECK(r->l4_len == 10);
	CHECK(r->payload_len() == 2);
	CHECK(verify_transport_checksum(*r));
}

TEST_CASE("ICMP echo: the id is both ports", "[parse]")
{
	Bytes b = ipv4(v4("192.0.2.9"), v4("8.8.8.8"), icmp(false, 8, 0, 0x1234, 1, Bytes(56, 0x42)));
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	CHECK(r->proto == proto_icmp);
	CHECK(r->icmp_type == 8);
	CHECK(r->sport == 0x1234);
	CHECK(r->dport == 0x1234);
	CHECK(r->l4_header_len == 8);
	CHECK(r->is_icmp_echo());
	CHECK_FALSE(r->is_icmp_error());
	CHECK(verify_transport_checksum(*r));

	Bytes b6 = ipv6(v6("2001:db8::9"), v6("2001:4860:4860::8888"), icmp(true, 129, 0, 77, 2, Bytes(8, 1)));
	auto r6 = parse(b6.data(), b6.size());
	REQUIRE(r6.has_value());
	CHECK(r6->proto == proto_icmpv6);
	CHECK(r6->is_icmp_echo());
	CHECK(r6->sport == 77);
	CHECK(r6->dport == 77);
	CHECK(verify_transport_checksum(*r6));

	/* Not an echo: no ports. */
	Bytes t = ipv4(v4("192.0.2.9"), v4("8.8.8.8"), icmp(false, 13, 0, 0x1234, 1));
	auto rt = parse(t.data(), t.size());
	REQUIRE(rt.has_value());
	CHECK_FALSE(rt->is_icmp_echo());
	CHECK(rt->sport == 0);
	CHECK(rt->dport == 0);
}

TEST_CASE("is_icmp_error covers exactly the error types", "[parse]")
{
	for (int type = 0; type < 256; ++type) {
		Bytes b = ipv4(v4("192.0.2.9"), v4("192.0.2.10"), icmp(false, static_cast<std::uint8_t>(type), 0, 0, 0));
		auto r = parse(b.data(), b.size());
		REQUIRE(r.has_value());
		CHECK(r->is_icmp_error() == (type == 3 || type == 11 || type == 12));
		CHECK(r->is_icmp_echo() == (type == 0 || type == 8));
		Bytes b6 = ipv6(v6("2001:db8::9"), v6("2001:db8::a"), icmp(true, static_cast<std::uint8_t>(type), 0, 0, 0));
		auto r6 = parse(b6.data(), b6.size());
		REQUIRE(r6.has_value());
		CHECK(r6->is_icmp_error() == (type >= 1 && type <= 4));
		CHECK(r6->is_icmp_echo() == (type == 128 || type == 129));
	}
}

TEST_CASE("IPv6 extension headers are walked", "[parse]")
{
	const auto src = v6("2001:db8::1"), dst = v6("2001:db8::2");
	Bytes b = ipv6(src, dst, tcp(1000, 80, 5, 6, tcp_ack),
		       {ext_options(0), ext_options(60, 1), ext_routing(0), ext_options(60)});
	auto r = parse(b.data(), b.size());
	REQUIRE(r.has_value());
	CHECK(r->l3_len == 40 + 8 + 16 + 24 + 8);
	CHECK(r->proto == proto_tcp);
	CHECK(r->sport == 1000);
	CHECK(r->l4_len == 20);
	CHECK(verify_transport_checksum(*r));

	SECTION("eight are allowed, nine are not")
	{
		std::vector<Ext> exts(8, ext_options(60));
		Bytes ok = ipv6(src, dst, udp(1, 2), exts);
		REQUIRE(parse(ok.data(), ok.size()).has_value());
		exts.push_back(ext_options(60));
		Bytes bad = ipv6(src, dst, udp(1, 2), exts);
		CHECK(parse_error(bad) == ParseError::bad_header);
	}
	SECTION("hop-by-hop must come first")
	{
		Bytes bad = ipv6(src, dst, udp(1, 2), {ext_options(60), ext_options(0)});
		CHECK(parse_error(bad) == ParseError::bad_header);
	}
	SECTION("a routing header with segments left is not for us")
	{
		Bytes bad = ipv6(src, dst, udp(1, 2), {ext_routing(1)});
		CHECK(parse_error(bad) == ParseError::unsupported);
	}
	SECTION("an extension header running past the packet")
	{
		Bytes bad = ipv6(src, dst, udp(1, 2), {ext_options(60, 1)});
		bad[41] = 5; /* 48 bytes claimed, 24 + 8 present */
		CHECK(parse_error(bad) == ParseError::truncated);
		Bytes cut = ipv6(src, dst, udp(1, 2), {ext_options(60)});
		cut.resize(41);
		put16(&cut[4], 1);
		CHECK(parse_error(cut) == ParseError::truncated);
	}
	SECTION("fragment header")
	{
		CHECK(parse_error(ipv6(src, dst, udp(1, 2), {ext_fragment(0, true)})) == ParseError::fragment);
		CHECK(parse_error(ipv6(src, dst, udp(1, 2), {ext_fragment(0, false)})) == ParseError::fragment);
		CHECK(parse_error(ipv6(src, dst, udp(1, 2), {ext_options(0), ext_fragment(100, false)})) ==
		      ParseError::fragment);
	}
}

TEST_CASE("every ParseError", "[parse]")
{
	const Bytes good = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(1, 2, 3, 4, tcp_ack, {1, 2, 3, 4}));
	const Bytes good6 = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), tcp(1, 2, 3, 4, tcp_ack, {1, 2, 3, 4}));

	SECTION("truncated")
	{
		Bytes b = good;
		CHECK(parse(b.data(), 0).error() == ParseError::truncated);
		CHECK(parse(nullptr, 100).error() == ParseError::truncated);
		CHECK(parse_error(b, 1) == ParseError::truncated);
		CHECK(parse_error(b, 19) == ParseError::truncated);
		Bytes b6 = good6;
		CHECK(parse_error(b6, 39) == ParseError::truncated);
		/* IHL larger than the buffer */
		Bytes ihl = good;
		ihl[0] = 0x4F;
		CHECK(parse_error(ihl, 40) == ParseError::truncated);
		/* TCP data offset past the packet */
		Bytes doff = good;
		doff[32] = 0xF0;
		CHECK(parse_error(doff) == ParseError::truncated);
		/* transport headers shorter than their fixed size: total length says so */
		for (auto t : {tcp(1, 2, 3, 4, 0), udp(1, 2), icmp(false, 8, 0, 1, 1)}) {
			Bytes s = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), t);
			const std::size_t cut = 20 + t.bytes.size() - 1;
			s.resize(cut);
			put16(&s[2], static_cast<std::uint16_t>(cut));
			fix_ipv4_checksum(s);
			CHECK(parse_error(s) == ParseError::truncated);
		}
		Bytes s6 = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), icmp(true, 128, 0, 1, 1));
		s6.resize(47);
		put16(&s6[4], 7);
		CHECK(parse_error(s6) == ParseError::truncated);
	}
	SECTION("bad_version")
	{
		for (int v : {0, 1, 5, 7, 15}) {
			Bytes b = good;
			b[0] = static_cast<std::uint8_t>(v << 4 | 5);
			CHECK(parse_error(b) == ParseError::bad_version);
		}
	}
	SECTION("bad_header")
	{
		for (int ihl = 0; ihl < 5; ++ihl) {
			Bytes b = good;
			b[0] = static_cast<std::uint8_t>(0x40 | ihl);
			CHECK(parse_error(b) == ParseError::bad_header);
		}
		Bytes doff = good;
		doff[32] = 0x40;
		CHECK(parse_error(doff) == ParseError::bad_header);
	}
	SECTION("bad_length")
	{
		Bytes longer = good;
		put16(&longer[2], static_cast<std::uint16_t>(good.size() + 1));
		fix_ipv4_checksum(longer);
		CHECK(parse_error(longer) == ParseError::bad_length);
		Bytes shorter = good;
		put16(&shorter[2], 19);
		fix_ipv4_checksum(shorter);
		CHECK(parse_error(shorter) == ParseError::bad_length);
		Bytes b6 = good6;
		put16(&b6[4], static_cast<std::uint16_t>(good6.size() - 40 + 1));
		CHECK(parse_error(b6) == ParseError::bad_length);
		/* UDP length outside [8, IP payload] */
		for (std::uint16_t ulen : {0, 7, 13}) {
			Bytes u = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(1, 2, {1, 2, 3, 4}));
			put16(&u[24], ulen);
			CHECK(parse_error(u) == ParseError::bad_length);
		}
	}
	SECTION("bad_checksum")
	{
		for (std::size_t i = 0; i < 20; ++i) {
			if (i == 0 || i == 2 || i == 3 || i == 6 || i == 7 || i == 9)
				continue; /* these would fail earlier or as fragment/unsupported */
			Bytes b = good;
			b[i] ^= 0x10;
			CHECK(parse_error(b) == ParseError::bad_checksum);
		}
		/* The transport checksum is not parse's business. */
		Bytes t = good;
		t[40] ^= 1;
		auto r = parse(t.data(), t.size());
		REQUIRE(r.has_value());
		CHECK_FALSE(verify_transport_checksum(*r));
	}
	SECTION("fragment")
	{
		for (std::uint16_t frag : {0x2000, 0x0001, 0x1FFF, 0x2010, 0x4001}) {
			V4Options o;
			o.frag = frag;
			CHECK(parse_error(ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(1, 2), o)) == ParseError::fragment);
		}
	}
	SECTION("unsupported")
	{
		for (std::uint8_t proto : {0, 2, 4, 41, 47, 50, 51, 58, 132, 255}) {
			Bytes b = good;
			b[9] = proto;
			fix_ipv4_checksum(b);
			CHECK(parse_error(b) == ParseError::unsupported);
		}
		for (std::uint8_t next : {1, 41, 50, 51, 59, 132}) {
			Bytes b = good6;
			b[6] = next;
			CHECK(parse_error(b) == ParseError::unsupported);
		}
	}
	CHECK(std::string(to_string(ParseError::truncated)) == "truncated");
	CHECK(std::string(to_string(ParseError::bad_version)) == "bad_version");
	CHECK(std::string(to_string(ParseError::bad_header)) == "bad_header");
	CHECK(std::string(to_string(ParseError::bad_length)) == "bad_length");
	CHECK(std::string(to_string(ParseError::bad_checksum)) == "bad_checksum");
	CHECK(std::string(to_string(ParseError::fragment)) == "fragment");
	CHECK(std::string(to_string(ParseError::unsupported)) == "unsupported");
}

TEST_CASE("every prefix of a valid packet fails cleanly", "[parse]")
{
	const std::vector<Bytes> packets = {
		ipv4(v4("192.0.2.1"), v4("192.0.2.2"), tcp(1, 2, 3, 4, tcp_syn, {}, linux_syn_options)),
		ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(1, 2, {1, 2, 3})),
		ipv6(v6("2001:db8::1"), v6("2001:db8::2"), icmp(true, 128, 0, 1, 2, {1}), {ext_options(0, 2)}),
	};
	for (const auto &full : packets) {
		for (std::size_t n = 0; n < full.size(); ++n) {
			/* Exactly n bytes, so ASan would see any read past them. */
			Bytes b(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
			auto r = parse(b.data(), b.size());
			CHECK_FALSE(r.has_value());
		}
	}
}

namespace {

/* An ICMPv4 error as a router sends it: its header, 8 bytes, then the start of the offending packet. */
Bytes icmp4_error(std::uint8_t type, std::uint8_t code, const Bytes &quoted)
{
	return ipv4(v4("203.0.113.1"), v4("192.0.2.1"), icmp(false, type, code, 0, 1500, quoted));
}

Bytes icmp6_error(std::uint8_t type, std::uint8_t code, const Bytes &quoted)
{
	return ipv6(v6("2001:db8:f::1"), v6("2001:db8::1"), icmp(true, type, code, 0, 1280, quoted));
}

} // namespace

TEST_CASE("parse_embedded reads the quoted packet's flow", "[parse][embedded]")
{
	const Bytes inner = ipv4(v4("192.0.2.1"), v4("198.51.100.7"), tcp(40000, 443, 1000, 0, tcp_syn, {}, linux_syn_options));
	for (std::uint8_t type : {3, 11, 12}) {
		Bytes b = icmp4_error(type, 1, inner);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		REQUIRE(outer->is_icmp_error());
		CHECK(verify_transport_checksum(*outer));
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->data == b.data() + 28);
		CHECK(e->len == inner.size());
		CHECK(e->key() == FlowKey{proto_tcp, {v4("192.0.2.1"), 40000}, {v4("198.51.100.7"), 443}});
		CHECK(e->seq == 1000);
		CHECK(e->tcp_flags == tcp_syn);
	}

	SECTION("cut to the IP header and 8 bytes, as RFC 792 routers do")
	{
		Bytes cut(inner.begin(), inner.begin() + 28);
		Bytes b = icmp4_error(11, 0, cut);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->len == 28);
		CHECK(e->l4_len == 8);
		CHECK(e->l4_header_len == 8);
		CHECK(e->payload_len() == 0);
		CHECK(e->sport == 40000);
		CHECK(e->dport == 443);
		CHECK(e->seq == 1000);
		CHECK(e->tcp_flags == 0);
	}
	SECTION("one byte short of 8 is not enough")
	{
		Bytes cut(inner.begin(), inner.begin() + 27);
		Bytes b = icmp4_error(3, 3, cut);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		CHECK(parse_embedded(*outer).error() == ParseError::truncated);
	}
	SECTION("the quoted header's checksum and total length are not checked")
	{
		Bytes odd = inner;
		odd[10] ^= 0xFF;
		put16(&odd[2], 1400);
		Bytes b = icmp4_error(3, 4, odd);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->len == inner.size());
	}
	SECTION("a quoted first fragment is fine, a later one is not")
	{
		V4Options o;
		o.frag = 0x2000;
		Bytes first = ipv4(v4("192.0.2.1"), v4("198.51.100.7"), udp(5000, 53, Bytes(100, 1)), o);
		Bytes b = icmp4_error(11, 1, first);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->sport == 5000);
		o.frag = 0x2001;
		Bytes later = ipv4(v4("192.0.2.1"), v4("198.51.100.7"), udp(5000, 53, Bytes(100, 1)), o);
		Bytes b2 = icmp4_error(11, 1, later);
		auto outer2 = parse(b2.data(), b2.size());
		REQUIRE(outer2.has_value());
		CHECK(parse_embedded(*outer2).error() == ParseError::fragment);
	}
	SECTION("a quoted echo")
	{
		Bytes echo = ipv4(v4("192.0.2.1"), v4("198.51.100.7"), icmp(false, 8, 0, 0xBEEF, 3, Bytes(20, 0)));
		Bytes b = icmp4_error(3, 1, echo);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->is_icmp_echo());
		CHECK(e->sport == 0xBEEF);
		CHECK(e->dport == 0xBEEF);
	}
	SECTION("not an error, wrong family, garbage")
	{
		Bytes echo = ipv4(v4("192.0.2.1"), v4("198.51.100.7"), icmp(false, 8, 0, 1, 1, inner));
		auto p = parse(echo.data(), echo.size());
		REQUIRE(p.has_value());
		CHECK(parse_embedded(*p).error() == ParseError::unsupported);

		Bytes six = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), udp(1, 2, {1, 2, 3, 4}));
		Bytes b = icmp4_error(3, 3, six);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		CHECK(parse_embedded(*outer).error() == ParseError::bad_version);

		Bytes empty = icmp4_error(3, 3, {});
		auto oe = parse(empty.data(), empty.size());
		REQUIRE(oe.has_value());
		CHECK(parse_embedded(*oe).error() == ParseError::truncated);
	}
}

TEST_CASE("parse_embedded over ICMPv6 errors", "[parse][embedded]")
{
	const Bytes inner = ipv6(v6("2001:db8::1"), v6("2001:db8:1::7"), udp(5353, 53, Bytes(1300, 0x55)),
				 {ext_options(0), ext_options(60)});
	for (std::uint8_t type : {1, 2, 3, 4}) {
		/* Quoted as much as fits in 1280. */
		Bytes cut(inner.begin(), inner.begin() + 1280 - 48);
		Bytes b = icmp6_error(type, 0, cut);
		REQUIRE(b.size() == 1280);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		CHECK(verify_transport_checksum(*outer));
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->family == AF_INET6);
		CHECK(e->l3_len == 56);
		CHECK(e->len == 1232);
		CHECK(e->l4_len == 1232 - 56);
		CHECK(e->key() == FlowKey{proto_udp, {v6("2001:db8::1"), 5353}, {v6("2001:db8:1::7"), 53}});
	}
	SECTION("a quoted first fragment header is skipped")
	{
		Bytes frag = ipv6(v6("2001:db8::1"), v6("2001:db8:1::7"), tcp(7, 8, 9, 10, tcp_ack), {ext_fragment(0, true)});
		Bytes b = icmp6_error(3, 1, frag);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		auto e = parse_embedded(*outer);
		REQUIRE(e.has_value());
		CHECK(e->sport == 7);
		CHECK(e->l3_len == 48);
		Bytes later = ipv6(v6("2001:db8::1"), v6("2001:db8:1::7"), tcp(7, 8, 9, 10, tcp_ack), {ext_fragment(3, true)});
		Bytes b2 = icmp6_error(3, 1, later);
		auto outer2 = parse(b2.data(), b2.size());
		REQUIRE(outer2.has_value());
		CHECK(parse_embedded(*outer2).error() == ParseError::fragment);
	}
	SECTION("an IPv4 packet inside ICMPv6")
	{
		Bytes four = ipv4(v4("192.0.2.1"), v4("192.0.2.2"), udp(1, 2));
		Bytes b = icmp6_error(1, 4, four);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		CHECK(parse_embedded(*outer).error() == ParseError::bad_version);
	}
	SECTION("ext headers cut off")
	{
		Bytes cut(inner.begin(), inner.begin() + 50);
		Bytes b = icmp6_error(1, 4, cut);
		auto outer = parse(b.data(), b.size());
		REQUIRE(outer.has_value());
		CHECK(parse_embedded(*outer).error() == ParseError::truncated);
	}
}
