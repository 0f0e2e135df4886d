// A hand-driven TCP client on a flow socket: just enough TCP to test bumblebee with packets the test writes itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <shoal/fdpass/unique_fd.h>
#include <shoal/packet/packet.h>

namespace shoal::test {

/* One raw IP packet as read from a flow socket, with its parsed view. */
struct RawPacket {
	std::vector<std::uint8_t> bytes;
	packet::Packet p;
};

/*
 * The client side of one TCP flow, speaking raw packets over a SOCK_SEQPACKET socketpair:
 * `theirs` goes to bumblebee with upgrade, `ours` carries the packets. No retransmission or
 * reordering: the path under test is a local socketpair and a TUN, and loss is a failure.
 */
class TcpPeer {
public:
	TcpPeer(packet::Endpoint client, packet::Endpoint server);

	UniqueFd theirs;
	UniqueFd ours;
	packet::Endpoint client, server;
	std::uint32_t snd_nxt = 0, rcv_nxt = 0;

	/* Writes any packet of this flow (seq/ack as given). */
	void send(std::uint8_t flags, std::uint32_t seq, std::uint32_t ack, const std::string &payload = {});
	void send_syn();
	/* Reads the next packet; nullopt on timeout. */
	std::optional<RawPacket> read(std::chrono::milliseconds timeout = std::chrono::seconds(5));
	/* Reads the SYN-ACK, checks it answers our SYN, sends the ACK. */
	bool complete_handshake();
	void send_data(const std::string &data);
	void send_fin();
	/* Reads segments until n payload bytes have come in order (ACKing them); "" on timeout. */
	std::string read_data(std::size_t n);
	/* Reads until a packet with all of flags arrives (payload is taken in and ACKed on the way). */
	std::optional<RawPacket> read_until(std::uint8_t flags, std::chrono::milliseconds timeout = std::chrono::seconds(5));
};

/* The next raw IP packet from fd, parsed (REQUIREd to parse); nullopt on timeout. */
std::optional<RawPacket> read_packet(int fd, std::chrono::milliseconds timeout);

/* A connected TCP socket's peer / local endpoint. */
packet::Endpoint peer_of(int fd);
packet::Endpoint local_of(int fd);
packet::Endpoint endpoint(const std::string &text);

} // namespace shoal::test
