// bumblebee under bad input: wrong fds, wrong first packets, garbage mid-flow, exhausted limits — an error each, no leak, no harm to live flows.
#include <catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "bumblebee_world.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

/* A flow that is upgraded and carrying data, to prove bad requests do not disturb it. */
struct LiveFlow {
	TcpPeer peer{endpoint("192.0.2.9:5555"), endpoint("198.51.100.9:80")};
	ClientMessage up;

	explicit LiveFlow(Client &c)
	{
		peer.send_syn();
		send_upgrade(c, peer.theirs);
		REQUIRE(peer.complete_handshake());
		up = expect(c, "upgraded");
		peer.theirs = UniqueFd();
	}
	void check(const std::string &msg)
	{
		peer.send_data(msg);
		REQUIRE(read_n(up.fds[0].get(), msg.size()) == msg);
	}
};

} // namespace

TEST_CASE("bumblebee refuses bad upgrades precisely, leaks nothing and keeps live flows", "[bad-input]")
{
	Bumblebee bb({"--max-flows", "3"});
	Client owner = bb.connect();
	LiveFlow live(owner);
	live.check("before");

	Client c = bb.connect();
	std::size_t fds = stable_fd_count(bb.process.pid());

	SECTION("no fd") {
		require_error(c.call("upgrade"), "bad_fds", "1 fd");
	}
	SECTION("two fds") {
		TcpPeer p(endpoint("192.0.2.1:1"), endpoint("198.51.100.1:2"));
		int two[2] = {p.theirs.get(), p.ours.get()};
		require_error(c.call("upgrade", {}, two), "bad_fds", "1 fd");
	}
	SECTION("a file") {
		int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "bad_fds", "not a socket");
		::close(fd);
	}
	SECTION("a stream socket") {
		auto [a, b] = stream_pair();
		int fd = a.get();
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "bad_fds", "SOCK_SEQPACKET");
	}
	SECTION("an unconnected datagram socket") {
		int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "bad_fds", "not connected");
		::close(fd);
	}
	SECTION("an unknown field") {
		TcpPeer p(endpoint("192.0.2.1:1"), endpoint("198.51.100.1:2"));
		int fd = p.theirs.get();
		require_error(c.call("upgrade", {{"protocl", "tcp"}}, std::span<const int>(&fd, 1)), "bad_request",
			      "protocl: unknown field");
	}
	SECTION("timeout_ms out of range") {
		TcpPeer p(endpoint("192.0.2.1:1"), endpoint("198.51.100.1:2"));
		int fd = p.theirs.get();
		require_error(c.call("upgrade", {{"timeout_ms", 0}}, std::span<const int>(&fd, 1)), "bad_request",
			      "timeout_ms");
	}
	SECTION("a first packet that is not a SYN") {
		TcpPeer p(endpoint("192.0.2.1:1000"), endpoint("198.51.100.1:80"));
		p.send(packet::tcp_ack, 1, 1, "data");
		int fd = p.theirs.get();
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "bad_request", "not a TCP SYN");
	}
	SECTION("a first packet that is not IP") {
		TcpPeer p(endpoint("192.0.2.1:1000"), endpoint("198.51.100.1:80"));
		REQUIRE(::send(p.ours.get(), "garbage!", 8, 0) == 8);
		int fd = p.theirs.get();
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "bad_request", "not a valid IP packet");
	}
	SECTION("a UDP upgrade whose first packet is TCP") {
		TcpPeer p(endpoint("192.0.2.1:1000"), endpoint("198.51.100.1:80"));
		p.send_syn();
		int fd = p.theirs.get();
		require_error(c.call("upgrade", {{"protocol", "udp"}}, std::span<const int>(&fd, 1)), "bad_request",
			      "not a UDP datagram");
	}
	SECTION("a bad first packet that arrives after the request") {
		TcpPeer p(endpoint("192.0.2.1:1000"), endpoint("198.51.100.1:80"));
		std::string id = send_upgrade(c, p.theirs);
		std::this_thread::sleep_for(100ms);
		p.send(packet::tcp_fin | packet::tcp_ack, 1, 1);
		auto r = c.receive(5s);
		REQUIRE(r);
		REQUIRE(r->json["id"] == id);
		require_error(r, "bad_request", "not a TCP SYN");
	}
	SECTION("garbage inside a live flow is dropped and counted") {
		std::uint8_t junk[64] = {0x45, 0, 0, 64};
		for (int i = 0; i < 100; i++)
			REQUIRE(::send(live.peer.ours.get(), junk, sizeof(junk), 0) == sizeof(junk));
		/* a well-formed packet of another flow is foreign to this one */
		std::uint8_t other[128];
		std::size_t n = packet::build_tcp(other, sizeof(other), endpoint("192.0.2.200:1"),
						  endpoint("198.51.100.9:80"), 1, 1, packet::tcp_ack);
		REQUIRE(::send(live.peer.ours.get(), other, n, 0) == static_cast<ssize_t>(n));
		live.check("still fine");
		nlohmann::json st = c.call("status").value().json;
		REQUIRE(st["counters_flows"]["drop_malformed"].get<int>() >= 100);
		REQUIRE(st["counters_flows"]["drop_foreign"].get<int>() >= 1);
	}
	SECTION("the flow limit") {
		std::vector<std::unique_ptr<TcpPeer>> peers;
		for (int i = 0; i < 2; i++) {
			peers.push_back(std::make_unique<TcpPeer>(endpoint("192.0.2.1:" + std::to_string(100 + i)),
								  endpoint("198.51.100.1:80")));
			send_upgrade(c, peers.back()->theirs, {{"confirm", true}});
		}
		TcpPeer extra(endpoint("192.0.2.1:200"), endpoint("198.51.100.1:80"));
		int fd = extra.theirs.get();
		require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "busy", "flows.max is 3");
		peers.clear(); /* their flow sockets close: those flows end with eof */
		expect(c, "ended");
		expect(c, "ended");
	}
	live.check("after");
	REQUIRE(wait_fd_count(bb.process.pid(), fds));
}

TEST_CASE("pending handshakes have their own limit", "[limits]")
{
	TempDir conf;
	Bumblebee bb({"--config", write_file(conf / "bb.json", R"({"flows": {"max_pending": 2}})")});
	Client c = bb.connect();
	std::vector<std::unique_ptr<TcpPeer>> peers;
	for (int i = 0; i < 2; i++) {
		peers.push_back(std::make_unique<TcpPeer>(endpoint("192.0.2.1:" + std::to_string(100 + i)),
							  endpoint("198.51.100.1:80")));
		peers.back()->send_syn();
		send_upgrade(c, peers.back()->theirs, {{"confirm", true}});
		expect(c, "syn");
	}
	TcpPeer extra(endpoint("192.0.2.1:200"), endpoint("198.51.100.1:80"));
	int fd = extra.theirs.get();
	require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "busy", "flows.max_pending is 2");
	/* Once one is upgraded, there is room again. */
	ClientMessage syn_ok = c.call("confirm", {{"task", "b1"}, {"accept", true}}).value();
	REQUIRE(syn_ok.op() == "confirmed");
	REQUIRE(peers[0]->complete_handshake());
	expect(c, "upgraded");
	extra.send_syn();
	send_upgrade(c, extra.theirs);
	REQUIRE(extra.complete_handshake());
	expect(c, "upgraded");
}

TEST_CASE("a full NAT pool answers exhausted and frees addresses only after the hold-down", "[limits]")
{
	/* A /30 holds 2 addresses: the listener's and one flow's. */
	TempDir conf;
	Bumblebee bb({"--config", write_file(conf / "bb.json",
					      R"({"namespace": {"inet4": "100.64.0.1/30"}, "flows": {"hold_down_ms": 400}})")});
	Client c = bb.connect();
	TcpPeer a(endpoint("192.0.2.1:1"), endpoint("198.51.100.1:80"));
	a.send_syn();
	send_upgrade(c, a.theirs);
	REQUIRE(a.complete_handshake());
	ClientMessage up = expect(c, "upgraded");

	TcpPeer b(endpoint("192.0.2.2:2"), endpoint("198.51.100.1:80"));
	b.send_syn();
	int fd = b.theirs.get();
	auto r = c.call("upgrade", {}, std::span<const int>(&fd, 1));
	require_error(r, "exhausted", "no free NAT address");

	a.send(packet::tcp_rst, a.snd_nxt, 0);
	expect(c, "ended");
	TcpPeer d(endpoint("192.0.2.3:3"), endpoint("198.51.100.1:80"));
	d.send_syn();
	fd = d.theirs.get();
	require_error(c.call("upgrade", {}, std::span<const int>(&fd, 1)), "exhausted"); /* held down */
	std::this_thread::sleep_for(600ms);
	TcpPeer e(endpoint("192.0.2.4:4"), endpoint("198.51.100.1:80"));
	e.send_syn();
	send_upgrade(c, e.theirs);
	REQUIRE(e.complete_handshake());
	expect(c, "upgraded");
}
