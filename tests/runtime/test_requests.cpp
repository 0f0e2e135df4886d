// The runtime's request path: status/list/hello, every kind of bad input, and the limits.
#include <catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "daemon_fixture.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

/* The daemon still answers, and its descriptor count is back where it was. */
void require_healthy(EchoDaemon &d, std::size_t fds_before)
{
	Client c = d.connect();
	auto r = c.call("status");
	REQUIRE(r);
	REQUIRE(r->op() == "status");
	CHECK(wait_fd_count(d.process.pid(), fds_before + 1)); /* + this status connection */
}

} // namespace

TEST_CASE("status, list and hello answer with v, id and their fields", "[requests]")
{
	EchoDaemon d;
	Client c = d.connect();
	auto s = c.call("status");
	REQUIRE(s);
	CHECK(s->op() == "status");
	CHECK(s->json.at("v") == 1);
	CHECK(s->json.at("daemon") == "shoal-echod");
	CHECK(s->json.at("protocol") == 1);
	CHECK(s->json.at("pid") == d.process.pid());
	CHECK(s->json.at("clients") == 1);
	CHECK(s->json.at("tasks") == 0);
	CHECK(s->json.contains("uptime_ms"));

	auto w = c.call("hello", {{"owner", "proxy-1"}});
	REQUIRE(w);
	CHECK(w->op() == "welcome");
	CHECK(w->json.at("owner") == "proxy-1");
	CHECK(w->json.at("mailbox") == 0);

	auto [mine, theirs] = stream_pair();
	int fd = theirs.get();
	auto a = c.call("echo", {{"metadata", {{"conn", 42}}}}, std::span<const int>(&fd, 1));
	REQUIRE(a);
	REQUIRE(a->op() == "accepted");
	theirs.reset();
	CHECK(echo_roundtrip(mine.get(), "hello through the runtime"));

	auto l = c.call("list");
	REQUIRE(l);
	REQUIRE(l->json.at("tasks").size() == 1);
	CHECK(l->json["tasks"][0].at("owner") == "proxy-1");
	CHECK(l->json["tasks"][0].at("metadata") == nlohmann::json{{"conn", 42}});

	/* The peer closes: done comes back with the socket and the metadata verbatim. */
	mine.reset();
	auto done = c.next_event(5s);
	REQUIRE(done);
	CHECK(done->op() == "done");
	CHECK(done->json.at("reason") == "eof");
	CHECK(done->json.at("metadata") == nlohmann::json{{"conn", 42}});
	CHECK(done->json.at("bytes") == 25);
	CHECK(done->fds.size() == 1);

	/* A second hello with another owner is refused; the same owner again is fine. */
	require_error(c.call("hello", {{"owner", "someone-else"}}), "bad_request", "owner");
	auto again = c.call("hello", {{"owner", "proxy-1"}});
	REQUIRE(again);
	CHECK(again->op() == "welcome");
}

TEST_CASE("bad input gets a precise error, leaks nothing and disturbs no one", "[bad-input]")
{
	EchoDaemon d;
	/* A bystander whose echo task must keep working through all of this. */
	Client bystander = d.connect();
	auto [mine, theirs] = stream_pair();
	int tfd = theirs.get();
	REQUIRE(bystander.call("echo", {}, std::span<const int>(&tfd, 1))->op() == "accepted");
	theirs.reset();

	Client c = d.connect();
	std::size_t fds = stable_fd_count(d.process.pid());

	SECTION("malformed JSON") {
		REQUIRE(c.send_raw("{\"v\":1,\"op\":"));
		require_error(c.receive(5s), "bad_request");
	}
	SECTION("not an object") {
		REQUIRE(c.send_raw("[1,2,3]"));
		require_error(c.receive(5s), "bad_request");
	}
	SECTION("unknown op, with the id echoed") {
		auto r = c.call("frobnicate");
		require_error(r, "unknown_op", "frobnicate");
		CHECK(r->json.at("id").is_string());
	}
	SECTION("unsupported version") {
		REQUIRE(c.send_raw(R"({"v":2,"op":"status","id":"x"})"));
		auto r = c.receive(5s);
		require_error(r, "unsupported_version");
		CHECK(r->json.at("id") == "x");
	}
	SECTION("missing id") {
		REQUIRE(c.send_raw(R"({"v":1,"op":"status"})"));
		require_error(c.receive(5s), "bad_request", "id");
	}
	SECTION("unknown field on a runtime op") {
		require_error(c.call("status", {{"verbose", true}}), "bad_request", "verbose");
	}
	SECTION("a message over 64 KiB") {
		std::string big = R"({"v":1,"op":"status","id":"big","pad":")" + std::string(70000, 'x') + "\"}";
		REQUIRE(c.send_raw(big));
		auto r = c.receive(5s);
		require_error(r, "bad_request", "65536");
		CHECK(r->json.at("id").is_null()); /* PROTOCOL.md §3: a truncated message has no trustworthy id */
	}
	SECTION("five fds, all closed by the daemon") {
		int p[2];
		REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
		int five[5] = {p[0], p[0], p[0], p[1], p[1]};
		REQUIRE(c.send("echo", {}, five));
		require_error(c.receive(5s), "bad_fds", "4");
		::close(p[0]);
		::close(p[1]);
	}
	SECTION("wrong fd count") {
		auto [x, y] = stream_pair();
		int two[2] = {x.get(), y.get()};
		require_error(c.call("echo", {}, two), "bad_fds", "1 fd");
		require_error(c.call("echo"), "bad_fds", "got 0");
	}
	SECTION("fds on an op that takes none") {
		auto [x, y] = stream_pair();
		int one = x.get();
		require_error(c.call("status", {}, std::span<const int>(&one, 1)), "bad_fds");
	}
	SECTION("an fd that is not a socket") {
		int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
		require_error(c.call("echo", {}, std::span<const int>(&fd, 1)), "bad_fds", "socket");
		::close(fd);
	}
	SECTION("a listening socket") {
		int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(::listen(l, 1) == 0); /* autobinds to a free loopback-reachable port */
		require_error(c.call("echo", {}, std::span<const int>(&l, 1)), "bad_fds");
		::close(l);
	}
	SECTION("an owner with forbidden characters") {
		require_error(c.call("hello", {{"owner", "bad owner!"}}), "bad_request", "owner");
	}

	/* After every kind of garbage: the bystander's task still echoes, nothing leaked. */
	CHECK(echo_roundtrip(mine.get(), "still here"));
	auto again = c.call("status");
	REQUIRE(again);
	CHECK(again->op() == "status");
	require_healthy(d, fds);
}

TEST_CASE("limits answer busy instead of stalling", "[limits]")
{
	SECTION("max_clients") {
		TempDir cfgdir;
		std::string cfg = cfgdir / "echod.json";
		{
			FILE *f = std::fopen(cfg.c_str(), "w");
			std::fputs("// three clients at most\n{ \"limits\": { \"max_clients\": 3 } }\n", f);
			std::fclose(f);
		}
		EchoDaemon d({"--config", cfg});
		std::vector<Client> clients;
		for (int i = 0; i < 3; i++) {
			clients.push_back(d.connect());
			REQUIRE(clients.back().call("status")->op() == "status");
		}
		Client extra = d.connect();
		auto r = extra.receive(5s);
		require_error(r, "busy", "max_clients");
		CHECK(r->json.at("id").is_null());
		/* and the connection is closed after the reply */
		auto eof = extra.receive(5s);
		REQUIRE(!eof);
		CHECK(eof.error() == EPIPE);
		clients.pop_back();
		std::this_thread::sleep_for(100ms);
		Client later = d.connect();
		CHECK(later.call("status")->op() == "status");
	}
	SECTION("max_inflight") {
		TempDir cfgdir;
		std::string cfg = cfgdir / "echod.json";
		{
			FILE *f = std::fopen(cfg.c_str(), "w");
			std::fputs("{ \"limits\": { \"max_inflight\": 2 } }\n", f);
			std::fclose(f);
		}
		EchoDaemon d({"--config", cfg});
		Client c = d.connect();
		auto id1 = c.send("sleep", {{"ms", 500}});
		auto id2 = c.send("sleep", {{"ms", 500}});
		REQUIRE(id1);
		REQUIRE(id2);
		require_error(c.call("sleep", {{"ms", 1}}), "busy", "max_inflight");
		/* the runtime's own ops are not counted */
		CHECK(c.call("status")->op() == "status");
		CHECK(c.wait_reply(*id1, 5s)->op() == "slept");
		CHECK(c.wait_reply(*id2, 5s)->op() == "slept");
		CHECK(c.call("sleep", {{"ms", 1}})->op() == "slept");
	}
	SECTION("max_tasks in the service") {
		EchoDaemon d({"--max-tasks", "2"});
		Client c = d.connect();
		std::vector<UniqueFd> keep;
		for (int i = 0; i < 2; i++) {
			auto [a, b] = stream_pair();
			int fd = b.get();
			REQUIRE(c.call("echo", {}, std::span<const int>(&fd, 1))->op() == "accepted");
			keep.push_back(std::move(a));
		}
		auto [a, b] = stream_pair();
		int fd = b.get();
		require_error(c.call("echo", {}, std::span<const int>(&fd, 1)), "busy");
	}
}

TEST_CASE("list pages through more tasks than one message holds", "[requests]")
{
	EchoDaemon d;
	Client c = d.connect();
	std::vector<UniqueFd> keep;
	for (int i = 0; i < 1500; i++) {
		auto [mine, theirs] = stream_pair();
		int fd = theirs.get();
		auto r = c.call("echo", {{"metadata", {{"client", "198.51.100.7:" + std::to_string(40000 + i)}, {"i", i}}}},
				std::span<const int>(&fd, 1));
		REQUIRE(r->op() == "accepted");
		keep.push_back(std::move(mine));
	}
	auto first = c.call("list");
	REQUIRE(first);
	REQUIRE(first->op() == "list");
	CHECK(first->json.at("total") == 1500);
	std::size_t n = first->json.at("tasks").size();
	CHECK(n < 1500);
	REQUIRE(first->json.at("next_offset") == n);
	std::size_t seen = n, pages = 1;
	nlohmann::json next = first->json["next_offset"];
	while (!next.is_null()) {
		auto page = c.call("list", {{"offset", next}});
		REQUIRE(page);
		REQUIRE(page->op() == "list");
		seen += page->json.at("tasks").size();
		next = page->json.at("next_offset");
		pages++;
	}
	CHECK(seen == 1500);
	CHECK(pages >= 2);
	CommandResult all = d.shoalctl({"list"});
	CHECK(all.status == 0);
	CHECK(std::count(all.output.begin(), all.output.end(), '\n') == 1500);
}
