// The owner mailbox: results outlive their requesting connection and reach the owner's next one.
#include <catch.hpp>

#include <thread>

#include "daemon_fixture.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

nlohmann::json wait_status(EchoDaemon &d, const std::function<bool(const nlohmann::json &)> &pred)
{
	nlohmann::json s;
	for (int i = 0; i < 300; i++) {
		Client c = d.connect();
		auto r = c.call("status");
		REQUIRE(r);
		s = r->json;
		if (pred(s))
			return s;
		std::this_thread::sleep_for(10ms);
	}
	FAIL("status never matched: " << s.dump());
	return s;
}

} // namespace

TEST_CASE("a result waits in the mailbox for its owner to reconnect", "[mailbox]")
{
	EchoDaemon d;
	auto [mine, theirs] = stream_pair();
	std::string task;
	{
		Client proxy = d.connect();
		REQUIRE(proxy.call("hello", {{"owner", "proxy-a"}})->op() == "welcome");
		task = start_echo(proxy, std::move(theirs), {{"client", "198.51.100.7:40000"}});
		CHECK(echo_roundtrip(mine.get(), "before the proxy restarts"));
	} /* the proxy goes away mid-task */

	wait_status(d, [](const nlohmann::json &s) { return s["clients"] == 1; } /* only the status query itself */);
	mine.reset(); /* the task ends while its owner is away */
	wait_status(d, [](const nlohmann::json &s) { return s["mailbox"]["messages"] == 1; });

	Client again = d.connect();
	auto w = again.call("hello", {{"owner", "proxy-a"}});
	REQUIRE(w);
	CHECK(w->json.at("mailbox") == 1);
	auto done = again.next_event(5s);
	REQUIRE(done);
	CHECK(done->op() == "done");
	CHECK(done->json.at("task") == task);
	CHECK(done->json.at("metadata") == nlohmann::json{{"client", "198.51.100.7:40000"}});
	REQUIRE(done->fds.size() == 1);
	/* the fd that came back is the very socket we handed over: its peer is closed */
	char b;
	CHECK(::recv(done->fds[0].get(), &b, 1, MSG_DONTWAIT) == 0);
	auto s = again.call("status");
	CHECK(s->json["mailbox"]["messages"] == 0);
}

TEST_CASE("a result goes to another live connection of the same owner", "[mailbox]")
{
	EchoDaemon d;
	Client second = d.connect();
	REQUIRE(second.call("hello", {{"owner", "proxy-b"}})->op() == "welcome");
	auto [mine, theirs] = stream_pair();
	{
		Client first = d.connect();
		REQUIRE(first.call("hello", {{"owner", "proxy-b"}})->op() == "welcome");
		start_echo(first, std::move(theirs), "m");
	}
	wait_status(d, [](const nlohmann::json &s) { return s["clients"] == 2; });
	mine.reset();
	auto done = second.next_event(5s);
	REQUIRE(done);
	CHECK(done->op() == "done");
	CHECK(done->fds.size() == 1);
}

TEST_CASE("an unclaimed result expires after the TTL and its fds are closed", "[mailbox]")
{
	TempDir cfgdir;
	std::string cfg = cfgdir / "ttl.json";
	FILE *f = std::fopen(cfg.c_str(), "w");
	std::fputs("{ \"mailbox\": { \"ttl_ms\": 200 } }\n", f);
	std::fclose(f);
	EchoDaemon d({"--config", cfg});
	std::size_t fds = stable_fd_count(d.process.pid());
	auto [mine, theirs] = stream_pair();
	{
		Client proxy = d.connect();
		REQUIRE(proxy.call("hello", {{"owner", "gone"}})->op() == "welcome");
		start_echo(proxy, std::move(theirs), nullptr);
	}
	wait_status(d, [](const nlohmann::json &s) { return s["clients"] == 1; } /* only the status query itself */);
	mine.reset();
	auto s = wait_status(d, [](const nlohmann::json &s) { return s["counters"]["mailbox_expired"] == 1; });
	CHECK(s["mailbox"]["messages"] == 0);
	CHECK(wait_fd_count(d.process.pid(), fds));
}

TEST_CASE("a result for a client that never said hello is counted as lost", "[mailbox]")
{
	EchoDaemon d;
	auto [mine, theirs] = stream_pair();
	{
		Client anon = d.connect();
		start_echo(anon, std::move(theirs), nullptr);
	}
	wait_status(d, [](const nlohmann::json &s) { return s["clients"] == 1; } /* only the status query itself */);
	mine.reset();
	wait_status(d, [](const nlohmann::json &s) { return s["counters"]["results_lost"] == 1; });
}
