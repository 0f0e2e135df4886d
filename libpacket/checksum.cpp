// RFC 1071 Internet checksums, RFC 1624 incremental updates, and whole-packet fill and verify.
#include <shoal/packet/packet.h>

#include "internal.h"

namespace shoal::packet {

using namespace detail;

namespace {

inline std::uint64_t add_carry(std::uint64_t acc, std::uint64_t w)
{
	acc += w;
	/* After a wrap acc <= 2^64 - 2, so the end-around carry itself cannot wrap. */
	return acc + (acc < w);
}

/* Folds to 16 bits without inverting; a non-zero sum stays non-zero (0xFFFF is "negative zero"). */
inline std::uint16_t fold16(std::uint64_t sum)
{
	sum = (sum >> 32) + (sum & 0xFFFFFFFFu);
	sum = (sum >> 32) + (sum & 0xFFFFFFFFu);
	sum = (sum >> 16) + (sum & 0xFFFFu);
	sum = (sum >> 16) + (sum & 0xFFFFu);
	return static_cast<std::uint16_t>(sum);
}

} // namespace

std::uint32_t checksum_add(std::uint32_t sum, const void *data, std::size_t len)
{
	const auto *p = static_cast<const std::uint8_t *>(data);
	/*
	 * Summing native 64-bit loads with end-around carry is the same ones'-complement sum as
	 * 16-bit words in network order (RFC 1071 byte-order independence; 2^64 - 1 is a multiple
	 * of 2^16 - 1), at a quarter of the additions.
	 */
	std::uint64_t acc = sum;
	while (len >= 32) {
		std::uint64_t w[4];
		std::memcpy(w, p, 32);
		acc = add_carry(acc, w[0]);
		acc = add_carry(acc, w[1]);
		acc = add_carry(acc, w[2]);
		acc = add_carry(acc, w[3]);
		p += 32;
		len -= 32;
	}
	while (len >= 8) {
		std::uint64_t w;
		std::memcpy(&w, p, 8);
		acc = add_carry(acc, w);
		p += 8;
		len -= 8;
	}
	if (len >= 4) {
		std::uint32_t w;
		std::memcpy(&w, p, 4);
		acc = add_carry(acc, w);
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		std::uint16_t w;
		std::memcpy(&w, p, 2);
		acc = add_carry(acc, w);
		p += 2;
		len -= 2;
	}
	if (len) {
		/* An odd last byte is the high byte of a word padded with zero (in network order). */
		const std::uint8_t last[2] = {p[0], 0};
		std::uint16_t w;
		std::memcpy(&w, last, 2);
		acc = add_carry(acc, w);
	}
	acc = (acc >> 32) + (acc & 0xFFFFFFFFu);
	acc = (acc >> 32) + (acc & 0xFFFFFFFFu);
	return static_cast<std::uint32_t>(acc);
}

std::uint16_t checksum_finish(std::uint32_t sum)
{
	return static_cast<std::uint16_t>(~fold16(sum));
}

std::uint16_t checksum_update16(std::uint16_t check, std::uint16_t old_word, std::uint16_t new_word)
{
	/* Eqn. 3 rather than 2: it never turns a valid checksum into the negative zero 0xFFFF. */
	std::uint32_t sum = static_cast<std::uint16_t>(~check);
	sum += static_cast<std::uint16_t>(~old_word);
	sum += new_word;
	return static_cast<std::uint16_t>(~fold16(sum));
}

std::uint16_t checksum_update(std::uint16_t check, const void *old_bytes, const void *new_bytes, std::size_t len)
{
	/* ~(sum of old words) is their ones'-complement negation, so one fold covers every word. */
	std::uint64_t sum = static_cast<std::uint16_t>(~check);
	sum += static_cast<std::uint16_t>(~fold16(checksum_add(0, old_bytes, len)));
	sum += checksum_add(0, new_bytes, len);
	return static_cast<std::uint16_t>(~fold16(sum));
}

namespace detail {

std::uint32_t pseudo_header_sum(int family, const std::uint8_t *src, const std::uint8_t *dst,
				std::uint8_t proto, std::size_t l4_len)
{
	const std::size_t n = addr_len(family);
	std::uint64_t sum = checksum_add(0, src, n);
	sum += checksum_add(0, dst, n);
	/* IPv6 has a 32-bit length; for IPv4 the high half is zero, so one formula serves both. */
	sum += raw16(static_cast<std::uint16_t>(l4_len >> 16));
	sum += raw16(static_cast<std::uint16_t>(l4_len));
	sum += raw16(proto);
	sum = (sum >> 32) + (sum & 0xFFFFFFFFu);
	sum = (sum >> 32) + (sum & 0xFFFFFFFFu);
	return static_cast<std::uint32_t>(sum);
}

std::uint32_t transport_sum(const Packet &p)
{
	std::uint32_t sum = 0;
	if (has_pseudo_header(p.proto))
		sum = pseudo_header_sum(p.family, p.data + src_offset(p.family), p.data + dst_offset(p.family),
					p.proto, p.l4_len);
	return checksum_add(sum, p.l4, p.l4_len);
}

} // namespace detail

void fill_checksums(Packet &p)
{
	if (!p.data)
		return;
	if (p.family == AF_INET && p.l3_len >= ipv4_header_min) {
		store_raw16(p.data + ipv4_off_check, 0);
		store_raw16(p.data + ipv4_off_check, checksum_finish(checksum_add(0, p.data, p.l3_len)));
	}
	const std::size_t off = transport_check_offset(p.proto);
	/* A quoted packet from parse_embedded may stop before its checksum field. */
	if (!off || !p.l4 || p.l4_len < off + 2)
		return;
	store_raw16(p.l4 + off, 0);
	std::uint16_t check = checksum_finish(transport_sum(p));
	/* RFC 768: zero means "no checksum", so a computed zero goes out as its other form. */
	if (p.proto == proto_udp && check == 0)
		check = 0xFFFF;
	store_raw16(p.l4 + off, check);
}

bool verify_transport_checksum(const Packet &p)
{
	const std::size_t off = transport_check_offset(p.proto);
	if (!p.data || !off || !p.l4 || p.l4_len < off + 2)
		return false;
	if (p.proto == proto_udp && load_raw16(p.l4 + off) == 0)
		/* Optional over IPv4 (RFC 768), mandatory over IPv6 (RFC 8200 8.1). */
		return p.family == AF_INET;
	return fold16(transport_sum(p)) == 0xFFFF;
}

} // namespace shoal::packet
