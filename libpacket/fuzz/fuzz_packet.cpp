// libFuzzer target: parse, rewrite, checksum and build on arbitrary IP packets, checking invariants after each.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <shoal/packet/packet.h>

using namespace shoal::packet;

namespace {

/* A broken invariant is a bug: abort so libFuzzer (and the replay test) report the input. */
#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			std::abort();                                                      \
		}                                                                          \
	} while (0)

using Bytes = std::vector<std::uint8_t>;

const std::uint8_t nat4_src[4] = {198, 51, 100, 77};
const std::uint8_t nat4_dst[4] = {203, 0, 113, 9};
const std::uint8_t nat6_src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x77};
const std::uint8_t nat6_dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x09};

Endpoint nat_src(int family)
{
	return {family == AF_INET ? Addr::v4_bytes(nat4_src) : Addr::v6_bytes(nat6_src), 40001};
}

Endpoint nat_dst(int family)
{
	return {family == AF_INET ? Addr::v4_bytes(nat4_dst) : Addr::v6_bytes(nat6_dst), 5353};
}

std::size_t check_offset(std::uint8_t proto)
{
	return proto == proto_tcp ? 16 : proto == proto_udp ? 6 : 2;
}

std::uint16_t get_raw16(const std::uint8_t *p)
{
	std::uint16_t v;
	std::memcpy(&v, p, 2);
	return v;
}

bool inside(const std::uint8_t *p, std::size_t n, const std::uint8_t *base, std::size_t size)
{
	return p >= base && n <= size && p - base <= static_cast<std::ptrdiff_t>(size - n);
}

/* The view parse or parse_embedded returned stays within the buffer and agrees with itself. */
void check_view(const Packet &p, const std::uint8_t *base, std::size_t size, bool quoted)
{
	FUZZ_CHECK(p.family == AF_INET || p.family == AF_INET6);
	FUZZ_CHECK(inside(p.data, p.len, base, size));
	FUZZ_CHECK(p.l4 == p.data + p.l3_len);
	FUZZ_CHECK(p.l3_len + p.l4_len <= p.len);
	if (p.proto != proto_udp || quoted)
		FUZZ_CHECK(p.l3_len + p.l4_len == p.len);
	FUZZ_CHECK(p.l3_len >= (p.family == AF_INET ? 20u : 40u));
	FUZZ_CHECK(p.l4_len >= 8);
	FUZZ_CHECK(p.l4_header_len <= p.l4_len);
	FUZZ_CHECK(p.payload() + p.payload_len() == p.l4 + p.l4_len);
	FUZZ_CHECK(p.proto == proto_tcp || p.proto == proto_udp ||
		   p.proto == (p.family == AF_INET ? proto_icmp : proto_icmpv6));
	if (!quoted && p.proto == proto_tcp)
		FUZZ_CHECK(p.l4_header_len >= 20 && p.l4_header_len % 4 == 0);
	if (p.is_icmp_echo())
		FUZZ_CHECK(p.sport == p.dport);
	FUZZ_CHECK(!(p.is_icmp_echo() && p.is_icmp_error()));

	/* Flow keys and their text forms. */
	const FlowKey k = p.key();
	FUZZ_CHECK(k.reversed().reversed() == k);
	FUZZ_CHECK(FlowKeyHash{}(k) == FlowKeyHash{}(p.key()));
	(void)EndpointHash{}(k.src);
	const auto text = p.src_addr().to_string();
	const auto back = Addr::parse(text);
	FUZZ_CHECK(back && *back == p.src_addr());
	FUZZ_CHECK(!p.src().to_string().empty());
	sockaddr_storage ss;
	const socklen_t sl = p.dst().to_sockaddr(ss);
	const auto ep = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr *>(&ss), sl);
	FUZZ_CHECK(ep && *ep == p.dst());
}

/* The builders on any parsed view: whatever they make parses back and verifies. */
void check_builders(const Packet &p)
{
	std::uint8_t out[1500];
	const std::size_t rst = build_tcp_rst(out, sizeof(out), p);
	if (p.proto == proto_tcp && !(p.tcp_flags & tcp_rst)) {
		FUZZ_CHECK(rst == (p.family == AF_INET ? 40u : 60u));
		auto r = parse(out, rst);
		FUZZ_CHECK(r.has_value());
		FUZZ_CHECK(verify_transport_checksum(*r));
		FUZZ_CHECK(r->key() == p.key().reversed());
		FUZZ_CHECK(r->tcp_flags & tcp_rst);
		FUZZ_CHECK(r->seq == ((p.tcp_flags & tcp_ack) ? p.ack : 0));
		FUZZ_CHECK(build_tcp_rst(out, rst - 1, p) == 0);
	} else {
		FUZZ_CHECK(rst == 0);
	}

	const Addr from = nat_src(p.family).addr;
	const std::size_t icmp = build_icmp_unreachable(out, sizeof(out), p, from, 1);
	if (p.is_icmp_error()) {
		FUZZ_CHECK(icmp == 0);
	} else {
		const std::size_t limit = p.family == AF_INET ? 576 : 1280;
		const std::size_t hdr = p.family == AF_INET ? 28 : 48;
		FUZZ_CHECK(icmp == std::min(limit, hdr + p.len));
		auto e = parse(out, icmp);
		FUZZ_CHECK(e.has_value());
		FUZZ_CHECK(e->is_icmp_error());
		FUZZ_CHECK(verify_transport_checksum(*e));
		FUZZ_CHECK(e->dst_addr() == p.src_addr());
		FUZZ_CHECK(std::memcmp(e->payload(), p.data, e->payload_len()) == 0);
		auto q = parse_embedded(*e);
		/* Extension headers may push the transport out of the quote, but what is there agrees. */
		if (e->payload_len() >= p.l3_len + 8)
			FUZZ_CHECK(q.has_value());
		if (q)
			FUZZ_CHECK(q->key() == p.key());
	}

	/* A UDP datagram carrying this packet's payload between its endpoints. */
	const std::size_t u = build_udp(out, sizeof(out), p.src(), p.dst(), p.payload(), p.payload_len(), p.ttl);
	const std::size_t want = (p.family == AF_INET ? 28 : 48) + p.payload_len();
	if (want <= sizeof(out)) {
		FUZZ_CHECK(u == want);
		auto r = parse(out, u);
		FUZZ_CHECK(r.has_value());
		FUZZ_CHECK(r->proto == proto_udp);
		FUZZ_CHECK(r->src() == p.src() && r->dst() == p.dst());
		FUZZ_CHECK(r->ttl == p.ttl);
		FUZZ_CHECK(verify_transport_checksum(*r));
		FUZZ_CHECK(std::memcmp(r->payload(), p.payload(), p.payload_len()) == 0);
	} else {
		FUZZ_CHECK(u == 0);
	}
}

/*
 * NAT both ends incrementally, then compare with a full recomputation: when the checksums
 * were right before, the incremental result must be byte-identical to the recomputed one.
 */
void check_rewrite(const Bytes &input, std::size_t len)
{
	Bytes inc(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(len));
	auto p = parse(inc.data(), inc.size());
	if (!p)
		return;
	const bool valid = verify_transport_checksum(*p);
	const std::size_t check_at = p->l3_len + check_offset(p->proto);
	const std::uint16_t original_check = get_raw16(&inc[check_at]);
	const bool udp_none = p->proto == proto_udp && p->family == AF_INET && original_check == 0;
	const bool untouched = p->proto == proto_icmp && !p->is_icmp_echo();
	/*
	 * An all-zero ICMPv4 message (checksum 0 included) sums to +0 and fails verification, yet
	 * 0 and 0xFFFF are the same ones'-complement number: once the id makes the data non-zero,
	 * the same arithmetic verifies. The only input whose validity a rewrite may change.
	 */
	const bool all_zero = p->proto == proto_icmp && std::all_of(p->l4, p->l4 + p->l4_len, [](std::uint8_t b) { return b == 0; });

	const Endpoint s = nat_src(p->family), d = nat_dst(p->family);
	set_src(*p, s);
	set_dst(*p, d);
	FUZZ_CHECK(p->src_addr() == s.addr && p->dst_addr() == d.addr);
	if (p->proto == proto_tcp || p->proto == proto_udp) {
		FUZZ_CHECK(p->src() == s && p->dst() == d);
	} else if (p->is_icmp_echo()) {
		FUZZ_CHECK(p->sport == d.port && p->dport == d.port);
	}
	/* The IPv4 header checksum was right (parse checked it), so it still is. */
	auto again = parse(inc.data(), inc.size());
	FUZZ_CHECK(again.has_value());
	FUZZ_CHECK(again->key() == p->key());
	if (udp_none)
		FUZZ_CHECK(get_raw16(&inc[check_at]) == 0);
	if (!all_zero)
		FUZZ_CHECK(verify_transport_checksum(*again) == valid);

	Bytes full = inc;
	auto f = parse(full.data(), full.size());
	FUZZ_CHECK(f.has_value());
	fill_checksums(*f);
	FUZZ_CHECK(verify_transport_checksum(*f));
	/* Everything but the transport checksum always matches a recomputation. */
	Bytes full_rest = full, inc_rest = inc;
	full_rest[check_at] = full_rest[check_at + 1] = inc_rest[check_at] = inc_rest[check_at + 1] = 0;
	FUZZ_CHECK(full_rest == inc_rest);
	/* A rewrite leaves alone a checksum it does not change: an ICMPv4 message other than echo. */
	if (untouched)
		FUZZ_CHECK(get_raw16(&inc[check_at]) == original_check);
	else if (valid && !udp_none)
		FUZZ_CHECK(full == inc);
}

/* The quoted packet of an ICMP error: rewrite it in place as a NAT would, then fix the outer checksums. */
void check_embedded(const Bytes &input, std::size_t len)
{
	Bytes buf(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(len));
	auto outer = parse(buf.data(), buf.size());
	if (!outer || !outer->is_icmp_error())
		return;
	auto e = parse_embedded(*outer);
	if (!e)
		return;
	check_view(*e, outer->payload(), outer->payload_len(), true);
	check_builders(*e);
	set_src(*e, nat_dst(e->family));
	set_dst(*e, nat_src(e->family));
	auto e2 = parse_embedded(*outer);
	FUZZ_CHECK(e2.has_value());
	FUZZ_CHECK(e2->src_addr() == nat_dst(e->family).addr);
	FUZZ_CHECK(e2->key() == e->key());
	fill_checksums(*outer);
	auto o2 = parse(buf.data(), buf.size());
	FUZZ_CHECK(o2.has_value());
	FUZZ_CHECK(verify_transport_checksum(*o2));
}

/* The checksum primitives on the raw input: chaining, and RFC 1624 updates against recomputation. */
void check_checksums(const std::uint8_t *data, std::size_t size)
{
	const std::uint16_t whole = checksum_finish(checksum_add(0, data, size));
	const std::size_t cut = (size / 2) & ~std::size_t{1};
	FUZZ_CHECK(checksum_finish(checksum_add(checksum_add(0, data, cut), data + cut, size - cut)) == whole);

	/* Overwrite the first n bytes of an even-length copy with the last n, incrementally and in full. */
	Bytes b(data, data + (size & ~std::size_t{1}));
	const std::size_t n = std::min<std::size_t>(16, b.size() / 2) & ~std::size_t{1};
	if (n == 0)
		return;
	const std::uint16_t before = checksum_finish(checksum_add(0, b.data(), b.size()));
	Bytes after = b;
	std::copy(b.end() - static_cast<std::ptrdiff_t>(n), b.end(), after.begin());
	/* All-zero data has two right checksums (0 and 0xFFFF); packets never are all zero. */
	if (std::all_of(after.begin(), after.end(), [](std::uint8_t x) { return x == 0; }))
		return;
	const std::uint16_t full = checksum_finish(checksum_add(0, after.data(), after.size()));
	FUZZ_CHECK(checksum_update(before, b.data(), after.data(), n) == full);
	Bytes one = b;
	std::copy(after.begin(), after.begin() + 2, one.begin());
	if (!std::all_of(one.begin(), one.end(), [](std::uint8_t x) { return x == 0; }))
		FUZZ_CHECK(checksum_update16(before, get_raw16(b.data()), get_raw16(after.data())) ==
			   checksum_finish(checksum_add(0, one.data(), one.size())));
}

/* Everything that follows from one packet; input is an exact-size buffer, so ASan sees any read past it. */
void check_packet(const Bytes &input_const)
{
	Bytes input = input_const;
	auto p = parse(input.data(), input.size());
	FUZZ_CHECK(input == input_const); /* parse never writes */
	if (!p) {
		/* Errors are one of the declared ones and have a name. */
		FUZZ_CHECK(to_string(p.error())[0] != '\0');
		return;
	}
	check_view(*p, input.data(), input.size(), false);

	/* The same packet with nothing after it parses the same way. */
	Bytes exact(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(p->len));
	auto pe = parse(exact.data(), exact.size());
	FUZZ_CHECK(pe.has_value());
	FUZZ_CHECK(pe->key() == p->key() && pe->l4_len == p->l4_len && pe->l3_len == p->l3_len);

	if (p->is_icmp_error()) {
		auto e = parse_embedded(*p);
		FUZZ_CHECK(input == input_const);
		if (e)
			FUZZ_CHECK(e->data == p->payload());
	}
	check_builders(*p);
	check_rewrite(input, p->len);
	check_embedded(input, p->len);

	/* fill_checksums makes any parsed packet verify, and then changes nothing more. */
	Bytes filled(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(p->len));
	auto pf = parse(filled.data(), filled.size());
	FUZZ_CHECK(pf.has_value());
	fill_checksums(*pf);
	FUZZ_CHECK(verify_transport_checksum(*pf));
	const Bytes once = filled;
	fill_checksums(*pf);
	FUZZ_CHECK(filled == once);
}

/*
 * The input with its IP length field matching its size and (IPv4) its header checksum right,
 * or empty if that changes nothing: most mutations break one of the two, and would otherwise
 * never get past the IP header.
 */
Bytes repaired(const Bytes &input)
{
	Bytes b = input;
	if (b.size() >= 20 && b[0] >> 4 == 4) {
		const std::size_t ihl = std::size_t{b[0] & 0x0Fu} * 4;
		if (ihl < 20 || ihl > b.size() || b.size() > 0xFFFF)
			return {};
		b[2] = static_cast<std::uint8_t>(b.size() >> 8);
		b[3] = static_cast<std::uint8_t>(b.size());
		b[10] = b[11] = 0;
		const std::uint16_t c = checksum_finish(checksum_add(0, b.data(), ihl));
		std::memcpy(&b[10], &c, 2);
	} else if (b.size() >= 40 && b[0] >> 4 == 6 && b.size() - 40 <= 0xFFFF) {
		b[4] = static_cast<std::uint8_t>((b.size() - 40) >> 8);
		b[5] = static_cast<std::uint8_t>(b.size() - 40);
	} else {
		return {};
	}
	return b == input ? Bytes{} : b;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const Bytes input(data, data + size);
	check_checksums(input.data(), input.size());
	check_packet(input);
	if (const Bytes fixed = repaired(input); !fixed.empty())
		check_packet(fixed);
	return 0;
}
