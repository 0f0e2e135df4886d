// splicer under bad input: every malformed or abusive request gets its error, leaks nothing, stops no relay.
#include <catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_fixture.h"
#include "relay_world.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

TEST_CASE("splicer answers bad requests precisely and keeps every other relay running", "[bad-input]")
{
	TestDaemon d("services/splicer/splicer", {"--max-relays", "2"});
	Client owner = d.connect();
	RelayEnds live = make_relay_ends(AF_INET);
	start_relay(owner, live);
	REQUIRE(write_all(live.client.get(), "before"));
	REQUIRE(read_n(live.server.get(), 6) == "before");

	Client c = d.connect();
	std::size_t fds = stable_fd_count(d.process.pid());

	SECTION("malformed JSON") {
		REQUIRE(c.send_raw("{\"v\":1,\"op\":\"splice\",\"id\":"));
		require_error(c.receive(5s), "bad_request");
	}
	SECTION("unknown op") {
		require_error(c.call("splice_harder"), "unknown_op");
	}
	SECTION("one fd instead of two") {
		RelayEnds e = make_relay_ends(AF_INET);
		int one = e.a.get();
		require_error(c.call("splice", {}, std::span<const int>(&one, 1)), "bad_fds", "2 fds");
	}
	SECTION("an fd that is not a socket") {
		RelayEnds e = make_relay_ends(AF_INET);
		int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
		int two[2] = {e.a.get(), fd};
		require_error(c.call("splice", {}, two), "bad_fds", "not a socket");
		::close(fd);
	}
	SECTION("a listening socket") {
		RelayEnds e = make_relay_ends(AF_INET);
		int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(::listen(l, 1) == 0);
		int two[2] = {l, e.b.get()};
		require_error(c.call("splice", {}, two), "bad_fds", "listening");
		::close(l);
	}
	SECTION("a datagram socket") {
		RelayEnds e = make_relay_ends(AF_INET);
		int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int two[2] = {e.a.get(), u};
		require_error(c.call("splice", {}, two), "bad_fds", "stream");
		::close(u);
	}
	SECTION("an unconnected socket") {
		RelayEnds e = make_relay_ends(AF_INET);
		int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int two[2] = {e.a.get(), t};
		require_error(c.call("splice", {}, two), "bad_fds", "not connected");
		::close(t);
	}
	SECTION("the same socket twice") {
		RelayEnds e = make_relay_ends(AF_INET);
		int two[2] = {e.a.get(), e.a.get()};
		require_error(c.call("splice", {}, two), "bad_fds", "same socket");
	}
	SECTION("metadata over 16 KiB") {
		RelayEnds e = make_relay_ends(AF_INET);
		int two[2] = {e.a.get(), e.b.get()};
		require_error(c.call("splice", {{"metadata", std::string(17000, 'm')}}, two), "bad_request", "metadata");
	}
	SECTION("an idle timeout out of range") {
		RelayEnds e = make_relay_ends(AF_INET);
		int two[2] = {e.a.get(), e.b.get()};
		require_error(c.call("splice", {{"idle_timeout_ms", 0}}, two), "bad_request", "idle_timeout_ms");
	}
	SECTION("five fds") {
		RelayEnds e = make_relay_ends(AF_INET);
		int five[5] = {e.a.get(), e.b.get(), e.a.get(), e.b.get(), e.a.get()};
		REQUIRE(c.send("splice", {}, five));
		require_error(c.receive(5s), "bad_fds");
	}
	SECTION("the relay limit") {
		RelayEnds second = make_relay_ends(AF_INET);
		start_relay(c, second);
		RelayEnds third = make_relay_ends(AF_INET);
		int two[2] = {third.a.get(), third.b.get()};
		require_error(c.call("splice", {}, two), "busy", "relays.max");
		/* the second relay works and ends normally, releasing its slot */
		second.client.reset();
		second.server.reset();
		auto done = c.next_event(5s);
		REQUIRE(done);
		CHECK(done->op() == "done");
		done->fds.clear();
		fds = stable_fd_count(d.process.pid());
	}
	SECTION("cancel of an unknown task") {
		require_error(c.call("cancel", {{"task", "s999999"}}), "not_found");
	}

	/* The relay that was running all along still runs; the daemon holds no extra descriptor. */
	REQUIRE(write_all(live.client.get(), "after"));
	CHECK(read_n(live.server.get(), 5) == "after");
	CHECK(c.call("status")->op() == "status");
	CHECK(wait_fd_count(d.process.pid(), fds));
}

TEST_CASE("a peer outside the allow-list is refused", "[bad-input]")
{
	if (::geteuid() != 0)
		std::exit(77);
	TempDir tmp;
	::chmod(tmp.path().c_str(), 0755);
	std::string cfg = tmp / "open.json";
	FILE *f = std::fopen(cfg.c_str(), "w");
	std::fputs("{ \"socket_mode\": \"0666\" }\n", f);
	std::fclose(f);
	TestDaemon d("services/splicer/splicer", {"--config", cfg});
	::chmod(d.dir.path().c_str(), 0755);
	pid_t pid = ::fork();
	if (pid == 0) {
		if (::setgid(65534) != 0 || ::setuid(65534) != 0)
			::_exit(10);
		auto c = Client::connect(d.socket);
		if (!c)
			::_exit(11);
		auto r = c->receive(5s);
		::_exit(r && r->is_error() && r->json.value("code", "") == "denied" ? 0 : 12);
	}
	int st = 0;
	::waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st));
	CHECK(WEXITSTATUS(st) == 0);
	Client c = d.connect();
	CHECK(c.call("status")->json.at("counters").at("denied") == 1);
}
