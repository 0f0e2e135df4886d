// Addresses and endpoints: construction, text and sockaddr conversion, and flow-table hashes.
#include <shoal/packet/packet.h>

#include <cstring>

#include <arpa/inet.h>

#include "internal.h"

namespace shoal::packet {

Addr Addr::v4(std::uint32_t host_order)
{
	Addr a;
	a.family = AF_INET;
	detail::store32(a.bytes.data(), host_order);
	return a;
}

Addr Addr::v4_bytes(const void *four)
{
	Addr a;
	a.family = AF_INET;
	std::memcpy(a.bytes.data(), four, 4);
	return a;
}

Addr Addr::v6_bytes(const void *sixteen)
{
	Addr a;
	a.family = AF_INET6;
	std::memcpy(a.bytes.data(), sixteen, 16);
	return a;
}

std::optional<Addr> Addr::parse(const std::string &text)
{
	/* inet_pton stops at a NUL, which would let "1.2.3.4\0junk" through. */
	if (text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string::npos)
		return std::nullopt;
	Addr a;
	if (::inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
		a.family = AF_INET;
		return a;
	}
	if (::inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
		a.family = AF_INET6;
		return a;
	}
	return std::nullopt;
}

std::uint32_t Addr::v4_host() const
{
	return detail::load32(bytes.data());
}

std::string Addr::to_string() const
{
	if (family != AF_INET && family != AF_INET6)
		return {};
	char buf[INET6_ADDRSTRLEN];
	if (!::inet_ntop(family, bytes.data(), buf, sizeof(buf)))
		return {};
	return buf;
}

std::string Endpoint::to_string() const
{
	std::string a = addr.to_string();
	if (addr.family == AF_INET6)
		a = "[" + a + "]";
	return a + ":" + std::to_string(port);
}

socklen_t Endpoint::to_sockaddr(sockaddr_storage &ss) const
{
	std::memset(&ss, 0, sizeof(ss));
	if (addr.family == AF_INET) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		std::memcpy(&sin->sin_addr, addr.bytes.data(), 4);
		return sizeof(sockaddr_in);
	}
	if (addr.family == AF_INET6) {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		std::memcpy(&sin6->sin6_addr, addr.bytes.data(), 16);
		return sizeof(sockaddr_in6);
	}
	return 0;
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr *sa, socklen_t len)
{
	/* Copied out, not cast: the caller's storage need not be aligned for sockaddr_in6. */
	if (!sa || len < static_cast<socklen_t>(sizeof(sa_family_t)))
		return std::nullopt;
	sa_family_t family;
	std::memcpy(&family, reinterpret_cast<const char *>(sa) + offsetof(sockaddr, sa_family), sizeof(family));
	if (family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
		sockaddr_in sin;
		std::memcpy(&sin, sa, sizeof(sin));
		return Endpoint{Addr::v4_bytes(&sin.sin_addr), ntohs(sin.sin_port)};
	}
	if (family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
		sockaddr_in6 sin6;
		std::memcpy(&sin6, sa, sizeof(sin6));
		/* Kept as IPv6 even when v4-mapped: the caller's socket family decides what it meant. */
		return Endpoint{Addr::v6_bytes(&sin6.sin6_addr), ntohs(sin6.sin6_port)};
	}
	return std::nullopt;
}

namespace {

/*
 * Multiply-xorshift over 64-bit words and a murmur3 finaliser: every input bit reaches the
 * low bits that power-of-two tables index by. Deterministic (unseeded) on purpose: processes
 * that hand flows to each other may shard by these values.
 */
constexpr std::uint64_t k_mul = 0x9E3779B97F4A7C15ull;

inline std::uint64_t step(std::uint64_t h, std::uint64_t w)
{
	h = (h ^ w) * k_mul;
	return h ^ (h >> 29);
}

inline std::uint64_t finish(std::uint64_t h)
{
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDull;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ull;
	h ^= h >> 33;
	return h;
}

inline std::uint64_t mix_addr(std::uint64_t h, const Addr &a)
{
	std::uint64_t w[2];
	std::memcpy(w, a.bytes.data(), 16);
	return step(step(h, w[0]), w[1]);
}

} // namespace

std::size_t FlowKeyHash::operator()(const FlowKey &k) const noexcept
{
	std::uint64_t h = 0x243F6A8885A308D3ull;
	h = mix_addr(h, k.src.addr);
	h = mix_addr(h, k.dst.addr);
	const std::uint64_t rest = std::uint64_t{k.src.port} | std::uint64_t{k.dst.port} << 16 |
				   std::uint64_t{k.proto} << 32 |
				   std::uint64_t{static_cast<std::uint8_t>(k.src.addr.family)} << 40 |
				   std::uint64_t{static_cast<std::uint8_t>(k.dst.addr.family)} << 48;
	return static_cast<std::size_t>(finish(step(h, rest)));
}

std::size_t EndpointHash::operator()(const Endpoint &e) const noexcept
{
	std::uint64_t h = 0x13198A2E03707344ull;
	h = mix_addr(h, e.addr);
	const std::uint64_t rest = std::uint64_t{e.port} | std::uint64_t{static_cast<std::uint8_t>(e.addr.family)} << 16;
	return static_cast<std::size_t>(finish(step(h, rest)));
}

} // namespace shoal::packet
