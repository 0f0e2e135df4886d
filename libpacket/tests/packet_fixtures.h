// Test-side packet construction and a reference checksum, written apart from libpacket so the tests do not check it against itself.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <vector>

#include <shoal/packet/packet.h>

namespace fixtures {

using Bytes = std::vector<std::uint8_t>;

/* RFC 1071 the slow, obvious way: big-endian 16-bit words summed in 32 bits, folded. */
inline std::uint32_t ref_sum(const std::uint8_t *p, std::size_t len, std::uint32_t sum = 0)
{
	for (std::size_t i = 0; i + 1 < len; i += 2)
		sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += static_cast<std::uint32_t>(p[len - 1] << 8);
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return sum;
}

inline std::uint16_t ref_checksum(const std::uint8_t *p, std::size_t len, std::uint32_t sum = 0)
{
	return static_cast<std::uint16_t>(~ref_sum(p, len, sum));
}

inline std::uint16_t get16(const std::uint8_t *p)
{
	return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

inline void put16(std::uint8_t *p, std::uint16_t v)
{
	p[0] = static_cast<std::uint8_t>(v >> 8);
	p[1] = static_cast<std::uint8_t>(v);
}

inline void put32(std::uint8_t *p, std::uint32_t v)
{
	put16(p, static_cast<std::uint16_t>(v >> 16));
	put16(p + 2, static_cast<std::uint16_t>(v));
}

inline shoal::packet::Addr v4(const char *text)
{
	return *shoal::packet::Addr::parse(text);
}

inline shoal::packet::Addr v6(const char *text)
{
	return *shoal::packet::Addr::parse(text);
}

/* The transport bytes of a packet under construction, before the IP header goes on. */
struct Transport {
	std::uint8_t proto;
	Bytes bytes;
};

inline Transport tcp(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
		     std::uint8_t flags, const Bytes &payload = {}, const Bytes &options = {})
{
	Bytes t(20 + options.size());
	put16(&t[0], sport);
	put16(&t[2], dport);
	put32(&t[4], seq);
	put32(&t[8], ack);
	t[12] = static_cast<std::uint8_t>(((20 + options.size()) / 4) << 4);
	t[13] = flags;
	put16(&t[14], 64240);
	std::copy(options.begin(), options.end(), t.begin() + 20);
	t.insert(t.end(), payload.begin(), payload.end());
	return {shoal::packet::proto_tcp, t};
}

inline Transport udp(std::uint16_t sport, std::uint16_t dport, const Bytes &payload = {})
{
	Bytes t(8);
	put16(&t[0], sport);
	put16(&t[2], dport);
	put16(&t[4], static_cast<std::uint16_t>(8 + payload.size()));
	t.insert(t.end(), payload.begin(), payload.end());
	return {shoal::packet::proto_udp, t};
}

inline Transport icmp(bool v6, std::uint8_t type, std::uint8_t code, std::uint16_t id, std::uint16_t seq,
		      const Bytes &payload = {})
{
	Bytes t(8);
	t[0] = type;
	t[1] = code;
	put16(&t[4], id);
	put16(&t[6], seq);
	t.insert(t.end(), payload.begin(), payload.end());
	return {v6 ? shoal::packet::proto_icmpv6 : shoal::packet::proto_icmp, t};
}

inline std::size_t check_offset(std::uint8_t proto)
{
	return proto == shoal::packet::proto_tcp ? 16 : proto == shoal::packet::proto_udp ? 6 : 2;
}

/* The reference transport checksum of a packet whose IP header starts at ip and transport at l4. */
inline std::uint16_t ref_transport_checksum(const Bytes &pkt, std::size_t l4_off, std::uint8_t proto, bool is_v6,
					    bool udp_zero_as_ffff = true)
{
	const std::size_t l4_len = pkt.size() - l4_off;
	Bytes l4(pkt.begin() + static_cast<std::ptrdiff_t>(l4_off), pkt.end());
	put16(&l4[check_offset(proto)], 0);
	std::uint32_t sum = 0;
	if (proto != shoal::packet::proto_icmp) {
		const std::size_t a = is_v6 ? 8 : 12, n = is_v6 ? 32 : 8;
		sum = ref_sum(&pkt[a], n);
		sum += proto;
		sum += static_cast<std::uint32_t>(l4_len >> 16);
		sum += static_cast<std::uint32_t>(l4_len & 0xFFFF);
	}
	std::uint16_t c = ref_checksum(l4.data(), l4.size(), sum);
	if (udp_zero_as_ffff && proto == shoal::packet::proto_udp && c == 0)
		c = 0xFFFF;
	return c;
}

struct V4Options {
	std::uint8_t ttl = 64;
	std::uint16_t frag = 0x4000; /* DF */
	Bytes ip_options;
	bool transport_checksum = true;
};

inline Bytes ipv4(const shoal::packet::Addr &src, const shoal::packet::Addr &dst, const Transport &t,
		  const V4Options &o = {})
{
	const std::size_t ihl = 20 + o.ip_options.size();
	Bytes p(ihl);
	p[0] = static_cast<std::uint8_t>(0x40 | ihl / 4);
	put16(&p[2], static_cast<std::uint16_t>(ihl + t.bytes.size()));
	put16(&p[4], 0x1c46);
	put16(&p[6], o.frag);
	p[8] = o.ttl;
	p[9] = t.proto;
	std::copy(src.bytes.begin(), src.bytes.begin() + 4, p.begin() + 12);
	std::copy(dst.bytes.begin(), dst.bytes.begin() + 4, p.begin() + 16);
	std::copy(o.ip_options.begin(), o.ip_options.end(), p.begin() + 20);
	put16(&p[10], ref_checksum(p.data(), ihl));
	p.insert(p.end(), t.bytes.begin(), t.bytes.end());
	if (o.transport_checksum)
		put16(&p[ihl + check_offset(t.proto)], ref_transport_checksum(p, ihl, t.proto, false));
	return p;
}

/* An IPv6 extension header: next header is patched in by ipv6(). */
struct Ext {
	std::uint8_t type;
	Bytes body; /* whole header; byte 0 (next header) is overwritten */
};

inline Ext ext_options(std::uint8_t type, std::size_t units = 0)
{
	Bytes b((units + 1) * 8);
	b[1] = static_cast<std::uint8_t>(units);
	/* PadN option filling the rest. */
	b[2] = 1;
	b[3] = static_cast<std::uint8_t>(b.size() - 4);
	return {type, b};
}

inline Ext ext_routing(std::uint8_t segments_left)
{
	Bytes b(24);
	b[1] = 2;
	b[2] = 4; /* segment routing header */
	b[3] = segments_left;
	return {43, b};
}

inline Ext ext_fragment(std::uint16_t offset_units, bool more)
{
	Bytes b(8);
	put16(&b[2], static_cast<std::uint16_t>(offset_units << 3 | (more ? 1 : 0)));
	put32(&b[4], 0xabcdef01);
	return {44, b};
}

inline Bytes ipv6(const shoal::packet::Addr &src, const shoal::packet::Addr &dst, const Transport &t,
		  const std::vector<Ext> &exts = {}, std::uint8_t hop_limit = 64, bool transport_checksum = true)
{
	Bytes p(40);
	p[0] = 0x60;
	p[1] = 0x01; /* a flow label, to show it is ignored */
	std::size_t ext_total = 0;
	for (const auto &e : exts)
		ext_total += e.body.size();
	put16(&p[4], static_cast<std::uint16_t>(ext_total + t.bytes.size()));
	p[6] = exts.empty() ? t.proto : exts[0].type;
	p[7] = hop_limit;
	std::copy(src.bytes.begin(), src.bytes.end(), p.begin() + 8);
	std::copy(dst.bytes.begin(), dst.bytes.end(), p.begin() + 24);
	for (std::size_t i = 0; i < exts.size(); ++i) {
		Bytes b = exts[i].body;
		b[0] = i + 1 < exts.size() ? exts[i + 1].type : t.proto;
		p.insert(p.end(), b.begin(), b.end());
	}
	const std::size_t l4_off = p.size();
	p.insert(p.end(), t.bytes.begin(), t.bytes.end());
	if (transport_checksum)
		put16(&p[l4_off + check_offset(t.proto)], ref_transport_checksum(p, l4_off, t.proto, true));
	return p;
}

inline Bytes random_bytes(std::mt19937_64 &rng, std::size_t n)
{
	Bytes b(n);
	for (auto &x : b)
		x = static_cast<std::uint8_t>(rng());
	return b;
}

} // namespace fixtures
