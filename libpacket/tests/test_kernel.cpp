// Cross-checks against the Linux stack over loopback: the kernel's RST and ICMP port unreachable must match ours.
#include <catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "packet_fixtures.h"

using namespace shoal::packet;
using namespace fixtures;

namespace {

struct Fd {
	int fd = -1;
	explicit Fd(int f) : fd(f) {}
	Fd(const Fd &) = delete;
	Fd &operator=(const Fd &) = delete;
	~Fd()
	{
		if (fd >= 0)
			::close(fd);
	}
};

/* A loopback port nothing listens on: bound and closed again. */
std::uint16_t closed_port(int type)
{
	Fd s(::socket(AF_INET, type, 0));
	REQUIRE(s.fd >= 0);
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(::bind(s.fd, reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == 0);
	socklen_t len = sizeof(sin);
	REQUIRE(::getsockname(s.fd, reinterpret_cast<sockaddr *>(&sin), &len) == 0);
	return ntohs(sin.sin_port);
}

/* Raw sockets need CAP_NET_RAW; without it these tests have nothing to compare against. */
int raw_socket(int proto)
{
	const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, proto);
	if (fd < 0)
		WARN("raw socket unavailable (" << std::strerror(errno) << "): kernel cross-check skipped");
	return fd;
}

/* Reads from a raw socket until match accepts a packet (copied to out) or 3 s pass. */
bool receive(int fd, Bytes &out, const std::function<bool(const Packet &)> &match)
{
	const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
	std::uint8_t buf[65536];
	while (std::chrono::steady_clock::now() < deadline) {
		pollfd pfd{fd, POLLIN, 0};
		if (::poll(&pfd, 1, 100) <= 0)
			continue;
		const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			continue;
		auto p = parse(buf, static_cast<std::size_t>(n));
		if (p && match(*p)) {
			out.assign(buf, buf + n);
			return true;
		}
	}
	return false;
}

} // namespace

TEST_CASE("a SYN to a closed port: the kernel's RST is the one we build", "[kernel]")
{
	Fd rx(raw_socket(IPPROTO_TCP));
	if (rx.fd < 0)
		return;
	Fd tx(raw_socket(IPPROTO_RAW));
	REQUIRE(tx.fd >= 0);

	const std::uint16_t dport = closed_port(SOCK_STREAM);
	const std::uint16_t sport = static_cast<std::uint16_t>(dport ^ 0x5A5A) | 0x8000;
	Bytes syn = ipv4(v4("127.0.0.1"), v4("127.0.0.1"), tcp(sport, dport, 0x11223344, 0, tcp_syn));
	/* What the kernel will see must be what fill_checksums writes. */
	{
		Bytes mine = syn;
		auto p = parse(mine.data(), mine.size());
		REQUIRE(p.has_value());
		put16(&mine[10], 0);
		put16(&mine[36], 0);
		fill_checksums(*p);
		REQUIRE(mine == syn);
	}
	sockaddr_in to{};
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(::sendto(tx.fd, syn.data(), syn.size(), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) ==
		static_cast<ssize_t>(syn.size()));

	Bytes rst;
	REQUIRE(receive(rx.fd, rst, [&](const Packet &p) {
		return p.sport == dport && p.dport == sport && (p.tcp_flags & tcp_rst);
	}));
	auto kernel = parse(rst.data(), rst.size());
	REQUIRE(kernel.has_value());
	CHECK(verify_transport_checksum(*kernel));
	CHECK(kernel->tcp_flags == (tcp_rst | tcp_ack));
	CHECK(kernel->seq == 0);
	CHECK(kernel->ack == 0x11223345);

	auto p = parse(syn.data(), syn.size());
	REQUIRE(p.has_value());
	std::uint8_t ours[64];
	const std::size_t n = build_tcp_rst(ours, sizeof(ours), *p);
	REQUIRE(n == 40);
	REQUIRE(rst.size() >= 40);
	/* The TCP header, checksum included, byte for byte (IP headers differ in ID and maybe TTL). */
	CHECK(Bytes(ours + 20, ours + 40) == Bytes(rst.begin() + 20, rst.begin() + 40));
	auto r = parse(ours, n);
	REQUIRE(r.has_value());
	CHECK(r->key() == kernel->key());
}

TEST_CASE("UDP to a closed port: the kernel's ICMP error parses, and ours matches it", "[kernel]")
{
	Fd rx(raw_socket(IPPROTO_ICMP));
	if (rx.fd < 0)
		return;
	const std::uint16_t dport = closed_port(SOCK_DGRAM);
	Fd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	REQUIRE(u.fd >= 0);
	sockaddr_in to{};
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons(dport);
	REQUIRE(::connect(u.fd, reinterpret_cast<sockaddr *>(&to), sizeof(to)) == 0);
	sockaddr_in me{};
	socklen_t len = sizeof(me);
	REQUIRE(::getsockname(u.fd, reinterpret_cast<sockaddr *>(&me), &len) == 0);
	const std::uint16_t sport = ntohs(me.sin_port);
	const char payload[] = "where is everybody?";
	REQUIRE(::send(u.fd, payload, sizeof(payload), 0) == static_cast<ssize_t>(sizeof(payload)));

	Bytes err;
	REQUIRE(receive(rx.fd, err, [&](const Packet &p) {
		if (!p.is_icmp_error())
			return false;
		auto e = parse_embedded(p);
		return e && e->proto == proto_udp && e->sport == sport && e->dport == dport;
	}));
	auto kernel = parse(err.data(), err.size());
	REQUIRE(kernel.has_value());
	CHECK(kernel->icmp_type == 3);
	CHECK(kernel->icmp_code == 3);
	CHECK(verify_transport_checksum(*kernel));
	auto quoted = parse_embedded(*kernel);
	REQUIRE(quoted.has_value());
	CHECK(quoted->src() == Endpoint{v4("127.0.0.1"), sport});
	CHECK(quoted->dst() == Endpoint{v4("127.0.0.1"), dport});
	CHECK(quoted->payload_len() == sizeof(payload));
	CHECK(std::memcmp(quoted->payload(), payload, sizeof(payload)) == 0);

	std::uint8_t ours[600];
	const std::size_t n = build_icmp_unreachable(ours, sizeof(ours), *quoted, v4("127.0.0.1"), 3);
	REQUIRE(n == err.size());
	/* The ICMP message, checksum included, byte for byte. */
	CHECK(Bytes(ours + 20, ours + n) == Bytes(err.begin() + 20, err.end()));
	auto r = parse(ours, n);
	REQUIRE(r.has_value());
	CHECK(r->key() == kernel->key());
}
