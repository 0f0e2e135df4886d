// splicer relays: TCP over IPv4 and IPv6 and Unix sockets, half-close, resets, idle timeouts, cancel.
#include <catch.hpp>

#include <netinet/in.h>
#include <linux/tcp.h>
#include <thread>
#include <unistd.h>


#include "daemon_fixture.h"
#include "relay_world.h"
#include "streams.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

struct Splicer : TestDaemon {
	explicit Splicer(const std::vector<std::string> &extra = {}) : TestDaemon("services/splicer/splicer", extra) {}
};

ClientMessage next_done(Client &c)
{
	auto done = c.next_event(10s);
	REQUIRE(done);
	INFO(done->json.dump());
	REQUIRE(done->op() == "done");
	return std::move(*done);
}

} // namespace

TEST_CASE("bytes flow both ways, EOF becomes shutdown, done hands both sockets back", "[relay]")
{
	auto family = GENERATE(AF_INET, AF_INET6, AF_UNIX);
	INFO("family " << family);
	Splicer d;
	Client c = d.connect();
	REQUIRE(c.call("hello", {{"owner", "test-proxy"}})->op() == "welcome");
	RelayEnds e = make_relay_ends(family);
	std::string task = start_relay(c, e, {{"metadata", {{"client", "198.51.100.7:41000"}, {"n", family}}}});

	/* 8 MiB each way at once, verified byte for byte, then both sides half-close. */
	std::vector<Stream> streams = {{e.client.get(), e.server.get(), 1, 8 << 20},
				       {e.server.get(), e.client.get(), 2, 8 << 20}};
	StreamResult r = run_streams(streams, 30s, true);
	CHECK(r.complete == 2);
	CHECK(r.corrupt == 0);
	CHECK(r.errors == 0);
	/* each side sees the other's EOF after the last byte */
	CHECK(read_to_eof(e.server.get()).empty());
	CHECK(read_to_eof(e.client.get()).empty());

	ClientMessage done = next_done(c);
	CHECK(done.json.at("task") == task);
	CHECK(done.json.at("reason") == "eof");
	CHECK_FALSE(done.json.contains("error"));
	CHECK(done.json.at("bytes_a_to_b") == 8 << 20);
	CHECK(done.json.at("bytes_b_to_a") == 8 << 20);
	CHECK(done.json.at("metadata") == nlohmann::json{{"client", "198.51.100.7:41000"}, {"n", family}});
	CHECK(done.json.at("duration_ms").get<std::int64_t>() >= 0);
	REQUIRE(done.fds.size() == 2);
	/* fd 0 is a (the client's peer), fd 1 is b (the server's peer) */
	if (family != AF_UNIX) {
		tcp_info ti{};
		socklen_t len = sizeof(ti);
		CHECK(::getsockopt(done.fds[0].get(), IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
		CHECK(ti.tcpi_bytes_received == (8u << 20) + 1); /* the FIN takes one sequence number */
	}
	auto s = c.call("status");
	CHECK(s->json.at("relays").at("active") == 0);
	CHECK(s->json.at("pipes").at("in_use") == 0);
}

TEST_CASE("half-close: one way ends, the other keeps flowing", "[relay]")
{
	Splicer d;
	Client c = d.connect();
	RelayEnds e = make_relay_ends(AF_INET);
	start_relay(c, e);
	REQUIRE(write_all(e.client.get(), "request"));
	REQUIRE(::shutdown(e.client.get(), SHUT_WR) == 0);
	CHECK(read_n(e.server.get(), 7) == "request");
	CHECK(read_to_eof(e.server.get()).empty()); /* EOF arrived as shutdown(SHUT_WR) */

	/* The server answers at length after the client's EOF. */
	std::string reply = pattern(9, 0, 3 << 20);
	std::thread writer([&] {
		write_all(e.server.get(), reply);
		::shutdown(e.server.get(), SHUT_WR);
	});
	std::string got = read_to_eof(e.client.get());
	writer.join();
	CHECK(got.size() == reply.size());
	CHECK(got == reply);
	ClientMessage done = next_done(c);
	CHECK(done.json.at("reason") == "eof");
	CHECK(done.json.at("bytes_a_to_b") == 7);
	CHECK(done.json.at("bytes_b_to_a") == 3 << 20);
}

TEST_CASE("a reset ends the relay with reason error and the errno", "[relay]")
{
	Splicer d;
	Client c = d.connect();
	RelayEnds e = make_relay_ends(AF_INET);
	start_relay(c, e, {{"metadata", "reset me"}});
	REQUIRE(write_all(e.client.get(), "hello"));
	CHECK(read_n(e.server.get(), 5) == "hello");
	linger lg{1, 0};
	REQUIRE(::setsockopt(e.server.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	e.server.reset(); /* RST */
	ClientMessage done = next_done(c);
	CHECK(done.json.at("reason") == "error");
	std::string err = done.json.at("error");
	CHECK((err == "ECONNRESET" || err == "EPIPE"));
	CHECK(done.json.at("metadata") == "reset me");
	CHECK(done.fds.size() == 2);
}

TEST_CASE("an idle relay ends after idle_timeout_ms; traffic keeps it alive", "[relay]")
{
	Splicer d;
	Client c = d.connect();
	RelayEnds quiet = make_relay_ends(AF_INET);
	RelayEnds busy = make_relay_ends(AF_INET);
	start_relay(c, quiet, {{"idle_timeout_ms", 300}});
	std::string busy_task = start_relay(c, busy, {{"idle_timeout_ms", 300}});
	auto start = std::chrono::steady_clock::now();
	/* keep the busy one talking for 900 ms */
	for (int i = 0; i < 9; i++) {
		REQUIRE(write_all(busy.client.get(), "x"));
		CHECK(read_n(busy.server.get(), 1) == "x");
		std::this_thread::sleep_for(100ms);
	}
	ClientMessage done = next_done(c);
	auto took = std::chrono::steady_clock::now() - start;
	CHECK(done.json.at("reason") == "idle_timeout");
	CHECK(done.json.at("task") != busy_task);
	CHECK(took >= 300ms);
	CHECK(c.call("status")->json.at("relays").at("active") == 1);
}

TEST_CASE("cancel returns the sockets, and bytes read but not yet written come back too", "[relay]")
{
	Splicer d;
	Client c = d.connect();
	/*
	 * Unix sockets: their buffers are fixed, so once the server stops reading the relay
	 * reaches a still point holding bytes it cannot write. (TCP keeps opening its window for
	 * a while, and a shrunken SO_RCVBUF leaves it to zero-window probes: minutes to drain.)
	 */
	RelayEnds e = make_relay_ends(AF_UNIX);
	std::string task = start_relay(c, e);

	/* The client writes up to 64 MiB; the server reads nothing, so bytes pile up everywhere. */
	std::string sent = pattern(5, 0, 64 << 20);
	std::size_t written = 0;
	auto until = std::chrono::steady_clock::now() + 2s;
	while (written < sent.size() && std::chrono::steady_clock::now() < until) {
		ssize_t n = ::send(e.client.get(), sent.data() + written, sent.size() - written, MSG_DONTWAIT);
		if (n > 0)
			written += static_cast<std::size_t>(n);
		else
			std::this_thread::sleep_for(5ms);
	}
	REQUIRE(written > 0);
	std::this_thread::sleep_for(200ms);
	INFO("client wrote " << written << " bytes before its buffers filled");

	auto r = c.call("cancel", {{"task", task}});
	REQUIRE(r);
	CHECK(r->op() == "cancelling");
	ClientMessage done = next_done(c);
	CHECK(done.json.at("reason") == "cancelled");
	REQUIRE(done.fds.size() >= 2);

	/*
	 * Nothing is lost: what the server got + what splicer returned unsent + what still
	 * waits unread in a == everything the client wrote, in order.
	 */
	std::uint64_t delivered = done.json.at("bytes_a_to_b");
	std::string at_server = read_n(e.server.get(), delivered);
	CHECK(at_server.size() == delivered);
	/*
	 * splicer stalls only with bytes in hand (a pipe or a copy buffer), so some come back:
	 * in a pipe, the third fd, which ends in EOF after exactly unsent_a_to_b bytes.
	 */
	REQUIRE(done.json.contains("unsent_a_to_b"));
	CHECK_FALSE(done.json.contains("unsent_b_to_a"));
	REQUIRE(done.fds.size() == 3);
	std::string unsent = read_to_eof(done.fds[2].get());
	CHECK(unsent.size() == done.json["unsent_a_to_b"].get<std::size_t>());
	::shutdown(e.client.get(), SHUT_WR);
	std::string in_a = read_to_eof(done.fds[0].get());
	std::string all = at_server + unsent + in_a;
	CHECK(all.size() == written);
	CHECK(all == sent.substr(0, written));

	/* cancelling what is gone */
	auto again = c.call("cancel", {{"task", task}});
	CHECK(again->is_error());
	CHECK(again->json.at("code") == "not_found");
}

TEST_CASE("small messages take the copy path, bulk takes splice; no pipe held while idle", "[relay]")
{
	Splicer d;
	Client c = d.connect();
	RelayEnds e = make_relay_ends(AF_INET);
	start_relay(c, e);
	for (int i = 0; i < 200; i++) {
		REQUIRE(write_all(e.client.get(), "p"));
		REQUIRE(read_n(e.server.get(), 1) == "p");
		REQUIRE(write_all(e.server.get(), "q"));
		REQUIRE(read_n(e.client.get(), 1) == "q");
	}
	auto s1 = c.call("status")->json;
	CHECK(s1.at("copies").get<std::uint64_t>() >= 400);
	CHECK(s1.at("splices") == 0);
	std::vector<Stream> bulk = {{e.client.get(), e.server.get(), 3, 16 << 20}};
	CHECK(run_streams(bulk, 30s, false).complete == 1);
	auto s2 = c.call("status")->json;
	CHECK(s2.at("splices").get<std::uint64_t>() > 0);
	CHECK(s2.at("pipes").at("in_use") == 0); /* idle again: the pipe went back */
	CHECK(s2.at("bytes").at("a_to_b") == 200 + (16 << 20));
}

TEST_CASE("with no pipes to be had, relays copy instead of failing", "[relay]")
{
	TempDir tmp;
	std::string cfg = tmp / "nopipes.json";
	FILE *f = std::fopen(cfg.c_str(), "w");
	std::fputs("{ \"pipes\": { \"max\": 0 } }\n", f);
	std::fclose(f);
	Splicer d({"--config", cfg});
	Client c = d.connect();
	RelayEnds e = make_relay_ends(AF_INET);
	start_relay(c, e);
	std::vector<Stream> streams = {{e.client.get(), e.server.get(), 7, 8 << 20},
				       {e.server.get(), e.client.get(), 8, 8 << 20}};
	StreamResult r = run_streams(streams, 30s, false);
	CHECK(r.complete == 2);
	auto s = c.call("status")->json;
	CHECK(s.at("copy_fallbacks").get<std::uint64_t>() > 0);
	CHECK(s.at("splices") == 0);
	CHECK(s.at("pipes").at("created") == 0);
}
