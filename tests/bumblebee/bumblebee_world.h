// Fixtures for bumblebee tests: the daemon, upgrade requests, and a UDP flow driven with hand-made packets.
#pragma once

#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "stream_io.h"
#include "tcp_peer.h"

namespace shoal::test {

/* bumblebee on its own socket and in its own namespace; extra flags after --socket. */
struct Bumblebee : TestDaemon {
	explicit Bumblebee(const std::vector<std::string> &extra = {})
		: TestDaemon("services/bumblebee/bumblebee", extra)
	{
	}
};

/* Sends upgrade {fields} with fds [flow]; returns the request id (the answer is late). */
std::string send_upgrade(Client &c, const UniqueFd &flow, const nlohmann::json &fields = nlohmann::json::object());

/* The next message from the daemon, REQUIREd to be op (an error's message is shown when it is not). */
ClientMessage expect(Client &c, const std::string &op, std::chrono::milliseconds timeout = std::chrono::seconds(10));

/* The client side of one UDP flow over a SOCK_SEQPACKET socketpair. */
class UdpPeer {
public:
	UdpPeer(packet::Endpoint client, packet::Endpoint server);
	UniqueFd theirs, ours;
	packet::Endpoint client, server;
	void send(const std::string &payload);
	std::optional<RawPacket> read(std::chrono::milliseconds timeout = std::chrono::seconds(5));
};

/* One datagram from a SOCK_SEQPACKET/DGRAM socket (5 s limit); "" on timeout. */
std::string recv_datagram(int fd);

} // namespace shoal::test
