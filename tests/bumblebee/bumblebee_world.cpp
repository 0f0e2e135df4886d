// Fixtures for bumblebee tests (see bumblebee_world.h).
#include "bumblebee_world.h"

#include <poll.h>
#include <sys/socket.h>

#include <catch.hpp>

namespace shoal::test {

std::string send_upgrade(Client &c, const UniqueFd &flow, const nlohmann::json &fields)
{
	int fd = flow.get();
	auto id = c.send("upgrade", fields, std::span<const int>(&fd, 1));
	REQUIRE(id.has_value());
	return *id;
}

ClientMessage expect(Client &c, const std::string &op, std::chrono::milliseconds timeout)
{
	auto m = c.receive(timeout);
	REQUIRE(m.has_value());
	INFO("got " << m->json.dump());
	REQUIRE(m->op() == op);
	return std::move(*m);
}

UdpPeer::UdpPeer(packet::Endpoint c, packet::Endpoint s) : client(c), server(s)
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	ours = UniqueFd(sv[0]);
	theirs = UniqueFd(sv[1]);
}

void UdpPeer::send(const std::string &payload)
{
	std::uint8_t buf[65536];
	std::size_t len = packet::build_udp(buf, sizeof(buf), client, server, payload.data(), payload.size());
	REQUIRE(len > 0);
	REQUIRE(::send(ours.get(), buf, len, MSG_NOSIGNAL) == static_cast<ssize_t>(len));
}

std::optional<RawPacket> UdpPeer::read(std::chrono::milliseconds timeout)
{
	return read_packet(ours.get(), timeout);
}

std::string recv_datagram(int fd)
{
	pollfd pfd{fd, POLLIN, 0};
	if (::poll(&pfd, 1, 5000) <= 0)
		return {};
	char buf[65536];
	ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

} // namespace shoal::test
