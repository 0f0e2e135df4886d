// Checksums: known vectors, agreement with the slow reference, RFC 1624 updates and fill/verify.
#include <catch.hpp>

#include <algorithm>
#include <cstring>

#include <arpa/inet.h>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

namespace {

/* The checksum API hands back words as they lie in memory; this reads them as numbers. */
std::uint16_t as_number(std::uint16_t raw)
{
	return ntohs(raw);
}

std::uint16_t raw(std::uint16_t number)
{
	return htons(number);
}

} // namespace

TEST_CASE("RFC 1071 section 3 example", "[checksum]")
{
	const std::uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
	const std::uint32_t sum = checksum_add(0, data, sizeof(data));
	/* The folded sum is 0xddf2; the checksum its complement. */
	CHECK(as_number(static_cast<std::uint16_t>(~checksum_finish(sum))) == 0xddf2);
	CHECK(as_number(checksum_finish(sum)) == 0x220d);
}

TEST_CASE("a textbook IPv4 header checksum", "[checksum]")
{
	std::uint8_t h[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
			    0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
	const std::uint16_t c = checksum_finish(checksum_add(0, h, sizeof(h)));
	CHECK(as_number(c) == 0xb861);
	std::memcpy(h + 10, &c, 2);
	/* With the checksum in place the header sums to negative zero. */
	CHECK(checksum_finish(checksum_add(0, h, sizeof(h))) == 0);
}

TEST_CASE("edge vectors", "[checksum]")
{
	CHECK(checksum_finish(checksum_add(0, nullptr, 0)) == 0xFFFF);
	const std::uint8_t zeros[64] = {};
	CHECK(checksum_finish(checksum_add(0, zeros, sizeof(zeros))) == 0xFFFF);
	std::uint8_t ones[64];
	std::memset(ones, 0xFF, sizeof(ones));
	CHECK(checksum_finish(checksum_add(0, ones, sizeof(ones))) == 0);
	/* An odd last byte is padded on the right. */
	const std::uint8_t odd[] = {0x12, 0x34, 0x56};
	CHECK(as_number(checksum_finish(checksum_add(0, odd, 3))) == static_cast<std::uint16_t>(~(0x1234 + 0x5600)));
	/* A sum carried in may be any 32-bit value. */
	CHECK(checksum_finish(checksum_add(0xFFFFFFFFu, zeros, 8)) == 0);
}

TEST_CASE("checksum_add agrees with the reference at every length and alignment", "[checksum]")
{
	std::mt19937_64 rng(1071);
	Bytes buf = random_bytes(rng, 70000);
	/* Whole maximal packets, so carries out of 32 bits must be handled. */
	std::memset(buf.data(), 0xFF, 66000);
	for (std::size_t len : {65535u, 65536u, 65575u, 66000u}) {
		const std::uint16_t ref = ref_checksum(buf.data(), len);
		CHECK(as_number(checksum_finish(checksum_add(0, buf.data(), len))) == ref);
	}
	for (int i = 0; i < 3000; ++i) {
		const std::size_t off = rng() % 64;
		const std::size_t len = rng() % 1600;
		const std::uint16_t ref = ref_checksum(buf.data() + off, len);
		REQUIRE(as_number(checksum_finish(checksum_add(0, buf.data() + off, len))) == ref);
		/* Split at an even point: sums chain. */
		const std::size_t cut = (rng() % (len + 1)) & ~std::size_t{1};
		const std::uint32_t first = checksum_add(0, buf.data() + off, cut);
		REQUIRE(as_number(checksum_finish(checksum_add(first, buf.data() + off + cut, len - cut))) == ref);
	}
}

TEST_CASE("RFC 1624 section 4 example and the negative-zero corner", "[checksum]")
{
	/* HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000 (eqn. 2 would say 0xFFFF). */
	CHECK(as_number(checksum_update16(raw(0xDD2F), raw(0x5555), raw(0x3285))) == 0x0000);
	/* No change, no new checksum (for any valid checksum, i.e. not 0xFFFF). */
	CHECK(as_number(checksum_update16(raw(0x1234), raw(0xABCD), raw(0xABCD))) == 0x1234);
	CHECK(as_number(checksum_update16(raw(0x0000), raw(0xABCD), raw(0xABCD))) == 0x0000);
}

TEST_CASE("incremental updates equal recomputation over random data", "[checksum]")
{
	std::mt19937_64 rng(1624);
	for (int i = 0; i < 20000; ++i) {
		const std::size_t words = 2 + rng() % 40;
		Bytes data = random_bytes(rng, words * 2);
		/* Bias towards the corners: all-ones words and sums near 0xFFFF. */
		if (rng() % 4 == 0)
			for (auto &b : data)
				b = (rng() % 3) ? 0xFF : b;
		const std::uint16_t check = raw(ref_checksum(data.data(), data.size()));
		const std::size_t at = 2 * (rng() % words);
		const std::size_t n = 2 * (1 + rng() % std::min<std::size_t>(8, words - at / 2));
		Bytes updated = data;
		for (std::size_t k = 0; k < n; ++k)
			updated[at + k] = (rng() % 5 == 0) ? 0 : static_cast<std::uint8_t>(rng());
		/* All-zero data has two right answers (0 and 0xFFFF); no header is ever all zero. */
		if (std::all_of(updated.begin(), updated.end(), [](std::uint8_t b) { return b == 0; }))
			continue;
		const std::uint16_t want = raw(ref_checksum(updated.data(), updated.size()));
		REQUIRE(checksum_update(check, data.data() + at, updated.data() + at, n) == want);
		std::uint16_t w_old, w_new;
		std::memcpy(&w_old, data.data() + at, 2);
		std::memcpy(&w_new, updated.data() + at, 2);
		Bytes one = data;
		std::memcpy(one.data() + at, &w_new, 2);
		if (std::all_of(one.begin(), one.end(), [](std::uint8_t b) { return b == 0; }))
			continue;
		REQUIRE(checksum_update16(check, w_old, w_new) == raw(ref_checksum(one.data(), one.size())));
	}
}

TEST_CASE("fill_checksums and verify_transport_checksum", "[checksum]")
{
	const std::vector<Bytes> packets = {
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), tcp(1, 2, 3, 4, tcp_ack, Bytes(33, 0x61))),
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), udp(1, 2, Bytes(7, 0x62))),
		ipv4(v4("192.0.2.1"), v4("198.51.100.2"), icmp(false, 8, 0, 9, 1, Bytes(5, 0x63))),
		ipv6(v6("2001:db8::1"), v6("2001:db8::2"), tcp(1, 2, 3, 4, tcp_fin | tcp_ack, Bytes(1, 0))),
		ipv6(v6("2001:db8::1"), v6("2001:db8::2"), udp(1, 2, Bytes(99, 0x64)), {ext_options(0)}),
		ipv6(v6("2001:db8::1"), v6("2001:db8::2"), icmp(true, 128, 0, 9, 1, Bytes(3, 0x65))),
		ipv6(v6("2001:db8::1"), v6("2001:db8::2"), icmp(true, 1, 4, 0, 0, Bytes(48, 0x66))),
	};
	for (const auto &good : packets) {
		Bytes b = good;
		auto p = parse(b.data(), b.size());
		REQUIRE(p.has_value());
		REQUIRE(verify_transport_checksum(*p));
		/* Every single-bit flip in the transport bytes is caught. */
		for (std::size_t i = p->l3_len * 8; i < b.size() * 8; i += 5) {
			b[i / 8] ^= static_cast<std::uint8_t>(1 << (i % 8));
			CHECK_FALSE(verify_transport_checksum(*p));
			b[i / 8] ^= static_cast<std::uint8_t>(1 << (i % 8));
		}
		/* So is a change of address (pseudo-header), except for ICMPv4. */
		b[p->family == AF_INET ? 19 : 39] ^= 1;
		CHECK(verify_transport_checksum(*p) == (p->proto == proto_icmp));
		b[p->family == AF_INET ? 19 : 39] ^= 1;
		/* Scribble over every checksum, then fill: back to the reference bytes. */
		b[p->l4 - b.data() + check_offset(p->proto)] ^= 0x5A;
		if (p->family == AF_INET)
			b[10] ^= 0xA5;
		fill_checksums(*p);
		CHECK(b == good);
	}
}

TEST_CASE("UDP zero checksum rules", "[checksum]")
{
	Bytes b = ipv4(v4("192.0.2.1"), v4("198.51.100.2"), udp(1, 2, {1, 2, 3}));
	put16(&b[26], 0);
	auto p = parse(b.data(), b.size());
	REQUIRE(p.has_value());
	CHECK(verify_transport_checksum(*p)); /* optional over IPv4 */

	Bytes b6 = ipv6(v6("2001:db8::1"), v6("2001:db8::2"), udp(1, 2, {1, 2, 3}));
	put16(&b6[46], 0);
	auto p6 = parse(b6.data(), b6.size());
	REQUIRE(p6.has_value());
	CHECK_FALSE(verify_transport_checksum(*p6)); /* mandatory over IPv6 */

	/* A datagram whose checksum computes to zero goes out as 0xFFFF. Search for one. */
	bool found = false;
	for (std::uint32_t v = 0; v < 0x10000 && !found; ++v) {
		Bytes z = ipv4(v4("192.0.2.1"), v4("198.51.100.2"), udp(1, 2, {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)}),
			       V4Options{64, 0x4000, {}, false});
		put16(&z[26], 0);
		std::uint16_t c = ref_checksum(z.data() + 20, 10, ref_sum(z.data() + 12, 8) + 17 + 10);
		if (c != 0)
			continue;
		found = true;
		auto pz = parse(z.data(), z.size());
		REQUIRE(pz.has_value());
		fill_checksums(*pz);
		CHECK(get16(&z[26]) == 0xFFFF);
		CHECK(verify_transport_checksum(*pz));
	}
	CHECK(found);
}
