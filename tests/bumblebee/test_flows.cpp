// bumblebee with hand-made packets: handshakes, data, FIN/RST, confirm, timeouts, UDP, live upgrades.
#include <catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bumblebee_world.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

const char *kClient4 = "192.0.2.7:40001", *kServer4 = "198.51.100.1:443";
const char *kClient6 = "[2001:db8::7]:40001", *kServer6 = "[2001:db8:1::1]:443";

void full_flow(Bumblebee &bb, const char *client, const char *server)
{
	Client c = bb.connect();
	TcpPeer peer(endpoint(client), endpoint(server));
	peer.send_syn();
	std::string id = send_upgrade(c, peer.theirs, {{"metadata", {{"conn", 7}}}});
	REQUIRE(peer.complete_handshake());
	ClientMessage up = expect(c, "upgraded");
	REQUIRE(up.json["id"] == id);
	REQUIRE(up.json["flow"]["protocol"] == "tcp");
	REQUIRE(up.json["flow"]["src"] == client);
	REQUIRE(up.json["flow"]["dst"] == server);
	REQUIRE(up.fds.size() == 1);
	int sock = up.fds[0].get();
	/* A real kernel TCP socket, connected, in bumblebee's namespace. */
	int type = 0;
	socklen_t len = sizeof(type);
	REQUIRE(::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) == 0);
	REQUIRE(type == SOCK_STREAM);
	REQUIRE(local_of(sock).port == 80);

	peer.send_data("hello kernel");
	REQUIRE(read_n(sock, 12) == "hello kernel");
	REQUIRE(write_all(sock, "hello client"));
	REQUIRE(peer.read_data(12) == "hello client");

	/* The server closes first, then the client: FIN both ways, both acknowledged. */
	::shutdown(sock, SHUT_WR);
	REQUIRE(peer.read_until(packet::tcp_fin));
	peer.send_fin();
	ClientMessage ended = expect(c, "ended");
	REQUIRE(ended.json["task"] == up.json["task"]);
	REQUIRE(ended.json["reason"] == "eof");
	REQUIRE(ended.json["metadata"] == nlohmann::json{{"conn", 7}});
	REQUIRE(ended.json["packets_out"].get<int>() >= 4);
	REQUIRE(ended.json["packets_in"].get<int>() >= 3);
	REQUIRE(ended.fds.empty());
	char ch;
	REQUIRE(::read(sock, &ch, 1) == 0); /* the kernel saw the client's FIN */
}

} // namespace

TEST_CASE("a TCP flow becomes a kernel socket and ends on FIN both ways (IPv4)", "[tcp]")
{
	Bumblebee bb;
	full_flow(bb, kClient4, kServer4);
}

TEST_CASE("a TCP flow becomes a kernel socket and ends on FIN both ways (IPv6)", "[tcp]")
{
	Bumblebee bb;
	full_flow(bb, kClient6, kServer6);
}

TEST_CASE("two tenants with the same client address get separate flows", "[tcp]")
{
	Bumblebee bb;
	Client c = bb.connect();
	TcpPeer a(endpoint(kClient4), endpoint(kServer4)), b(endpoint(kClient4), endpoint(kServer4));
	a.send_syn();
	b.send_syn();
	send_upgrade(c, a.theirs);
	send_upgrade(c, b.theirs);
	REQUIRE(a.complete_handshake());
	REQUIRE(b.complete_handshake());
	ClientMessage ua = expect(c, "upgraded"), ub = expect(c, "upgraded");
	REQUIRE(ua.json["task"] != ub.json["task"]);
	REQUIRE(peer_of(ua.fds[0].get()) != peer_of(ub.fds[0].get())); /* distinct NAT addresses */
	a.send_data("aaaa");
	b.send_data("bbbb");
	std::string got_a = read_n(ua.fds[0].get(), 4), got_b = read_n(ub.fds[0].get(), 4);
	/* The upgraded replies may come in either order; each socket carries exactly one tenant. */
	REQUIRE(((got_a == "aaaa" && got_b == "bbbb") || (got_a == "bbbb" && got_b == "aaaa")));
}

TEST_CASE("a RST from the client ends the flow and resets the kernel socket", "[tcp]")
{
	Bumblebee bb;
	Client c = bb.connect();
	TcpPeer peer(endpoint(kClient4), endpoint(kServer4));
	peer.send_syn();
	send_upgrade(c, peer.theirs);
	REQUIRE(peer.complete_handshake());
	ClientMessage up = expect(c, "upgraded");
	peer.send(packet::tcp_rst, peer.snd_nxt, 0);
	REQUIRE(expect(c, "ended").json["reason"] == "eof");
	char ch;
	REQUIRE(::read(up.fds[0].get(), &ch, 1) < 0);
	REQUIRE(errno == ECONNRESET);
}

TEST_CASE("closing the flow socket ends the flow and resets the kernel socket", "[tcp]")
{
	Bumblebee bb;
	Client c = bb.connect();
	TcpPeer peer(endpoint(kClient6), endpoint(kServer6));
	peer.send_syn();
	send_upgrade(c, peer.theirs);
	REQUIRE(peer.complete_handshake());
	ClientMessage up = expect(c, "upgraded");
	peer.theirs = UniqueFd();
	peer.ours = UniqueFd();
	REQUIRE(expect(c, "ended").json["reason"] == "eof");
	char ch;
	REQUIRE(::read(up.fds[0].get(), &ch, 1) < 0);
	REQUIRE(errno == ECONNRESET);
}

TEST_CASE("confirm: accept completes the handshake, refuse sends the client a RST", "[confirm]")
{
	Bumblebee bb;
	Client c = bb.connect();
	SECTION("accept") {
		TcpPeer peer(endpoint(kClient4), endpoint(kServer4));
		peer.send_syn();
		std::string id = send_upgrade(c, peer.theirs, {{"confirm", true}});
		ClientMessage syn = expect(c, "syn");
		REQUIRE(syn.json["id"] == id);
		REQUIRE(syn.json["flow"]["dst"] == kServer4);
		REQUIRE_FALSE(peer.read(300ms)); /* nothing reaches the kernel before the confirm */
		ClientMessage ok = c.call("confirm", {{"task", syn.json["task"]}, {"accept", true}}).value();
		REQUIRE(ok.op() == "confirmed");
		REQUIRE(peer.complete_handshake());
		REQUIRE(expect(c, "upgraded").json["task"] == syn.json["task"]);
	}
	SECTION("refuse") {
		TcpPeer peer(endpoint(kClient6), endpoint(kServer6));
		peer.send_syn();
		send_upgrade(c, peer.theirs, {{"confirm", true}});
		ClientMessage syn = expect(c, "syn");
		REQUIRE(c.call("confirm", {{"task", syn.json["task"]}, {"accept", false}}).value().op() == "confirmed");
		auto rst = peer.read();
		REQUIRE(rst);
		REQUIRE((rst->p.tcp_flags & packet::tcp_rst));
		REQUIRE(rst->p.ack == peer.snd_nxt); /* answers the SYN: a refused connection, not a timeout */
		REQUIRE(packet::verify_transport_checksum(rst->p));
		REQUIRE(expect(c, "ended").json["reason"] == "rejected");
	}
	SECTION("a task that is not waiting") {
		require_error(c.call("confirm", {{"task", "b999"}, {"accept", true}}), "not_found");
	}
}

TEST_CASE("a handshake that does not finish in timeout_ms ends with timeout and a RST", "[timeout]")
{
	Bumblebee bb;
	Client c = bb.connect();
	SECTION("confirm never comes") {
		TcpPeer peer(endpoint(kClient4), endpoint(kServer4));
		peer.send_syn();
		send_upgrade(c, peer.theirs, {{"confirm", true}, {"timeout_ms", 300}});
		expect(c, "syn");
		auto rst = peer.read(3s);
		REQUIRE(rst);
		REQUIRE((rst->p.tcp_flags & packet::tcp_rst));
		REQUIRE(expect(c, "ended").json["reason"] == "timeout");
	}
	SECTION("the client never ACKs the SYN-ACK") {
		TcpPeer peer(endpoint(kClient4), endpoint(kServer4));
		peer.send_syn();
		send_upgrade(c, peer.theirs, {{"timeout_ms", 300}});
		auto synack = peer.read();
		REQUIRE(synack);
		REQUIRE(synack->p.tcp_flags == (packet::tcp_syn | packet::tcp_ack));
		REQUIRE(peer.read_until(packet::tcp_rst, 3s));
		REQUIRE(expect(c, "ended").json["reason"] == "timeout");
	}
	SECTION("no first packet at all") {
		TcpPeer peer(endpoint(kClient4), endpoint(kServer4));
		send_upgrade(c, peer.theirs, {{"timeout_ms", 200}});
		REQUIRE(expect(c, "ended").json["reason"] == "timeout");
	}
}

TEST_CASE("UDP: the upgraded socket carries the flow's payloads both ways", "[udp]")
{
	Bumblebee bb;
	Client c = bb.connect();
	for (auto [client, server] : {std::pair{kClient4, kServer4}, std::pair{kClient6, kServer6}}) {
		UdpPeer peer(endpoint(client), endpoint(server));
		peer.send("question");
		send_upgrade(c, peer.theirs, {{"protocol", "udp"}});
		ClientMessage up = expect(c, "upgraded");
		REQUIRE(up.json["flow"]["protocol"] == "udp");
		REQUIRE(up.json["flow"]["src"] == client);
		int s = up.fds[0].get();
		REQUIRE(recv_datagram(s) == "question");
		peer.send("second");
		REQUIRE(recv_datagram(s) == "second");
		REQUIRE(::send(s, "answer", 6, 0) == 6);
		auto r = peer.read();
		REQUIRE(r);
		REQUIRE(r->p.proto == packet::proto_udp);
		REQUIRE(r->p.src() == endpoint(server));
		REQUIRE(r->p.dst() == endpoint(client));
		REQUIRE(packet::verify_transport_checksum(r->p));
		REQUIRE(std::string(reinterpret_cast<const char *>(r->p.payload()), r->p.payload_len()) == "answer");
		up.fds.clear(); /* the caller closes its socket: the flow ends */
		REQUIRE(expect(c, "ended").json["reason"] == "eof");
	}
}

TEST_CASE("UDP: a refused confirm sends ICMP port unreachable", "[udp]")
{
	Bumblebee bb;
	Client c = bb.connect();
	UdpPeer peer(endpoint(kClient4), endpoint(kServer4));
	peer.send("knock");
	send_upgrade(c, peer.theirs, {{"protocol", "udp"}, {"confirm", true}});
	ClientMessage syn = expect(c, "syn");
	REQUIRE(c.call("confirm", {{"task", syn.json["task"]}, {"accept", false}}).value().op() == "confirmed");
	auto r = peer.read();
	REQUIRE(r);
	REQUIRE(r->p.proto == packet::proto_icmp);
	REQUIRE(r->p.icmp_type == 3);
	REQUIRE(r->p.icmp_code == 3);
	auto inner = packet::parse_embedded(r->p);
	REQUIRE(inner);
	REQUIRE(inner->src() == endpoint(kClient4));
	REQUIRE(expect(c, "ended").json["reason"] == "rejected");
}

TEST_CASE("a live upgrade keeps established and half-open flows", "[upgrade]")
{
	Bumblebee bb;
	Client c = bb.connect();
	REQUIRE(c.call("hello", {{"owner", "test"}}).value().op() == "welcome");
	TcpPeer live(endpoint(kClient4), endpoint(kServer4));
	live.send_syn();
	send_upgrade(c, live.theirs);
	REQUIRE(live.complete_handshake());
	ClientMessage up = expect(c, "upgraded");
	int sock = up.fds[0].get();
	TcpPeer waiting(endpoint(kClient6), endpoint(kServer6));
	waiting.send_syn();
	send_upgrade(c, waiting.theirs, {{"confirm", true}});
	ClientMessage syn = expect(c, "syn");

	for (int i = 0; i < 3; i++) {
		pid_t before = bb.serving_pid();
		Client ctl = bb.connect();
		ClientMessage done = ctl.call("upgrade_daemon", {}, {}, 20s).value();
		REQUIRE(done.op() == "handed_over");
		REQUIRE(done.json["tasks"] == 2);
		REQUIRE(bb.serving_pid() != before);
		std::string msg = "round " + std::to_string(i);
		live.send_data(msg);
		REQUIRE(read_n(sock, msg.size()) == msg);
		REQUIRE(write_all(sock, msg));
		REQUIRE(live.read_data(msg.size()) == msg);
	}
	REQUIRE(c.call("confirm", {{"task", syn.json["task"]}, {"accept", true}}).value().op() == "confirmed");
	REQUIRE(waiting.complete_handshake());
	ClientMessage up2 = expect(c, "upgraded");
	waiting.send_data("after upgrades");
	REQUIRE(read_n(up2.fds[0].get(), 14) == "after upgrades");
	nlohmann::json st = c.call("status").value().json;
	REQUIRE(st["upgrades"] == 3);
	REQUIRE(st["flows"]["upgraded"] == 2);
}
