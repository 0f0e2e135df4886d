// TcpPeer: build, send and read the raw packets of one hand-driven TCP flow.
#include "tcp_peer.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <stdexcept>

#include <catch.hpp>

#include <shoal/proto/address.h>

namespace shoal::test {

TcpPeer::TcpPeer(packet::Endpoint c, packet::Endpoint s) : client(c), server(s)
{
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		throw std::runtime_error("socketpair");
	ours = UniqueFd(sv[0]);
	theirs = UniqueFd(sv[1]);
	snd_nxt = std::random_device{}();
}

void TcpPeer::send(std::uint8_t flags, std::uint32_t seq, std::uint32_t ack, const std::string &payload)
{
	std::vector<std::uint8_t> buf(65536);
	std::size_t len = packet::build_tcp(buf.data(), buf.size(), client, server, seq, ack, flags, 65535,
					    payload.data(), payload.size());
	REQUIRE(len > 0);
	REQUIRE(::send(ours.get(), buf.data(), len, MSG_NOSIGNAL) == static_cast<ssize_t>(len));
}

void TcpPeer::send_syn()
{
	send(packet::tcp_syn, snd_nxt, 0);
	snd_nxt++;
}

std::optional<RawPacket> read_packet(int fd, std::chrono::milliseconds timeout)
{
	pollfd pfd{fd, POLLIN, 0};
	if (::poll(&pfd, 1, static_cast<int>(timeout.count())) <= 0)
		return std::nullopt;
	RawPacket r;
	r.bytes.resize(65536);
	ssize_t n = ::recv(fd, r.bytes.data(), r.bytes.size(), MSG_DONTWAIT);
	if (n <= 0)
		return std::nullopt;
	r.bytes.resize(static_cast<std::size_t>(n));
	auto p = packet::parse(r.bytes.data(), r.bytes.size());
	REQUIRE(p.has_value());
	r.p = *p;
	return r;
}

std::optional<RawPacket> TcpPeer::read(std::chrono::milliseconds timeout)
{
	return read_packet(ours.get(), timeout);
}

bool TcpPeer::complete_handshake()
{
	/* As a real client does: the SYN again after a second without answer (any hop may drop a packet). */
	std::optional<RawPacket> r;
	for (int attempt = 0; attempt < 5 && !r; attempt++) {
		if (attempt > 0) {
			UNSCOPED_INFO("SYN retransmitted (attempt " << attempt + 1 << ")");
			send(packet::tcp_syn, snd_nxt - 1, 0);
		}
		r = read(std::chrono::seconds(1));
	}
	if (!r) {
		UNSCOPED_INFO("no SYN-ACK within 5 s");
		return false;
	}
	const packet::Packet &p = r->p;
	UNSCOPED_INFO("got flags " << int(p.tcp_flags) << " seq " << p.seq << " ack " << p.ack << " (our next seq "
				   << snd_nxt << ")");
	CHECK(p.src() == server);
	CHECK(p.dst() == client);
	CHECK(packet::verify_transport_checksum(p));
	if (p.tcp_flags != (packet::tcp_syn | packet::tcp_ack) || p.ack != snd_nxt)
		return false;
	rcv_nxt = p.seq + 1;
	send(packet::tcp_ack, snd_nxt, rcv_nxt);
	return true;
}

void TcpPeer::send_data(const std::string &data)
{
	send(packet::tcp_ack | packet::tcp_psh, snd_nxt, rcv_nxt, data);
	snd_nxt += static_cast<std::uint32_t>(data.size());
}

void TcpPeer::send_fin()
{
	send(packet::tcp_fin | packet::tcp_ack, snd_nxt, rcv_nxt);
	snd_nxt++;
}

std::optional<RawPacket> TcpPeer::read_until(std::uint8_t flags, std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (std::chrono::steady_clock::now() < deadline) {
		auto r = read(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
		if (!r)
			return std::nullopt;
		const packet::Packet &p = r->p;
		CHECK(packet::verify_transport_checksum(p));
		if (p.payload_len() && p.seq == rcv_nxt) {
			rcv_nxt += static_cast<std::uint32_t>(p.payload_len());
			if (p.tcp_flags & packet::tcp_fin)
				rcv_nxt++;
			send(packet::tcp_ack, snd_nxt, rcv_nxt);
		} else if ((p.tcp_flags & packet::tcp_fin) && p.seq == rcv_nxt) {
			rcv_nxt++;
			send(packet::tcp_ack, snd_nxt, rcv_nxt);
		}
		if ((p.tcp_flags & flags) == flags)
			return r;
	}
	return std::nullopt;
}

std::string TcpPeer::read_data(std::size_t n)
{
	std::string got;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
		auto r = read();
		if (!r)
			break;
		const packet::Packet &p = r->p;
		if (!p.payload_len() || p.seq != rcv_nxt)
			continue;
		got.append(reinterpret_cast<const char *>(p.payload()), p.payload_len());
		rcv_nxt += static_cast<std::uint32_t>(p.payload_len());
		send(packet::tcp_ack, snd_nxt, rcv_nxt);
	}
	return got;
}

packet::Endpoint peer_of(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *packet::Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

packet::Endpoint local_of(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *packet::Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

packet::Endpoint endpoint(const std::string &text)
{
	auto ss = proto::parse_endpoint(text);
	REQUIRE(ss.has_value());
	return *packet::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr *>(&*ss), sizeof(*ss));
}

} // namespace shoal::test
