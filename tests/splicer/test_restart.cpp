// splicer across restarts: a proxy that dies, ten live upgrades under load, a stop that hands everything back.
#include <catch.hpp>

#include <atomic>
#include <csignal>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <shoal/proto/base64.h>

#include "daemon_fixture.h"
#include "relay_world.h"
#include "streams.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

TEST_CASE("the proxy dies mid-relay; as the same owner it gets done with both fds and the metadata", "[mailbox]")
{
	TestDaemon d("services/splicer/splicer", {});
	RelayEnds e = make_relay_ends(AF_INET);
	std::string task;
	{
		Client proxy = d.connect();
		REQUIRE(proxy.call("hello", {{"owner", "edge-proxy"}})->op() == "welcome");
		task = start_relay(proxy, e, {{"metadata", {{"conn", 77}}}});
	} /* the proxy is gone; the relay is not */
	REQUIRE(write_all(e.client.get(), "still relayed"));
	CHECK(read_n(e.server.get(), 13) == "still relayed");
	e.client.reset();
	e.server.reset();

	/* wait for the done to be parked */
	for (int i = 0; i < 300; i++) {
		auto s = d.connect().call("status");
		if (s->json["mailbox"]["messages"] == 1)
			break;
		std::this_thread::sleep_for(10ms);
	}
	Client again = d.connect();
	auto w = again.call("hello", {{"owner", "edge-proxy"}});
	REQUIRE(w);
	CHECK(w->json.at("mailbox") == 1);
	auto done = again.next_event(5s);
	REQUIRE(done);
	CHECK(done->op() == "done");
	CHECK(done->json.at("task") == task);
	CHECK(done->json.at("metadata") == nlohmann::json{{"conn", 77}});
	CHECK(done->json.at("bytes_a_to_b") == 13);
	CHECK(done->fds.size() == 2);
}

TEST_CASE("200 relays streaming both ways survive 10 live upgrades with every byte intact", "[upgrade-200]")
{
	raise_fd_limit();
	TestDaemon d("services/splicer/splicer", {"--log-level", "info"});
	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "load"}})->op() == "welcome");
	std::vector<RelayEnds> relays;
	std::vector<Stream> streams;
	constexpr std::size_t kRelays = 200;
	constexpr std::size_t kBytes = 2 << 20; /* per direction */
	for (std::size_t i = 0; i < kRelays; i++) {
		relays.push_back(make_relay_ends(i % 2 ? AF_INET : AF_INET6));
		start_relay(proxy, relays.back(), {{"metadata", i}});
	}
	for (std::size_t i = 0; i < kRelays; i++) {
		streams.push_back({relays[i].client.get(), relays[i].server.get(), 2 * i, kBytes});
		streams.push_back({relays[i].server.get(), relays[i].client.get(), 2 * i + 1, kBytes});
	}

	/*
	 * Upgrades run in their own thread while the streams flow; each stream may send one more
	 * eleventh of its bytes per finished upgrade, so every upgrade has bytes in flight.
	 */
	std::vector<int> statuses;
	std::atomic<int> upgrades_done{0};
	std::thread upgrader([&] {
		for (int i = 0; i < 10; i++) {
			std::this_thread::sleep_for(30ms);
			statuses.push_back(d.shoalctl({"upgrade"}).status);
			upgrades_done++;
		}
	});
	StreamResult r = run_streams(streams, 120s, true, [&] {
		std::size_t cap = kBytes / 11 * static_cast<std::size_t>(upgrades_done + 1);
		if (upgrades_done == 10)
			cap = kBytes;
		for (Stream &s : streams)
			s.cap = cap;
	});
	upgrader.join();

	CHECK(std::count(statuses.begin(), statuses.end(), 0) == 10);
	CHECK(r.complete == 2 * kRelays);
	CHECK(r.corrupt == 0);
	CHECK(r.errors == 0); /* no ECONNRESET, no early EOF */
	CHECK(r.bytes == 2 * kRelays * kBytes);
	auto s = proxy.call("status");
	CHECK(s->json.at("upgrades") == 10);

	/* every relay ends normally, reported to the connection that crossed ten processes */
	for (auto &e : relays) {
		e.client.reset();
		e.server.reset();
	}
	std::size_t eof = 0;
	for (std::size_t i = 0; i < kRelays; i++) {
		auto done = proxy.next_event(10s);
		REQUIRE(done);
		eof += done->json.value("reason", "") == "eof" &&
		       done->json.value("bytes_a_to_b", 0ULL) == kBytes && done->json.value("bytes_b_to_a", 0ULL) == kBytes;
	}
	CHECK(eof == kRelays);
}

TEST_CASE("SIGTERM hands every relay back with reason shutdown", "[stop]")
{
	TestDaemon d("services/splicer/splicer", {});
	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "p"}})->op() == "welcome");
	std::vector<RelayEnds> relays;
	for (int i = 0; i < 5; i++) {
		relays.push_back(make_relay_ends(AF_INET));
		start_relay(proxy, relays.back(), {{"metadata", i}});
		REQUIRE(write_all(relays.back().client.get(), "x"));
		REQUIRE(read_n(relays.back().server.get(), 1) == "x");
	}
	d.process.signal(SIGTERM);
	for (int i = 0; i < 5; i++) {
		auto done = proxy.next_event(10s);
		REQUIRE(done);
		CHECK(done->op() == "done");
		CHECK(done->json.at("reason") == "shutdown");
		CHECK(done->json.at("bytes_a_to_b") == 1);
		CHECK(done->fds.size() == 2);
	}
	auto st = d.process.wait(10s);
	REQUIRE(st);
	CHECK(*st == 0);
}
