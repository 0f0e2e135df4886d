// Live upgrades: every client, mailbox result and task moves to a new process; failures leave the old one serving.
#include <catch.hpp>

#include <csignal>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "daemon_fixture.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

pid_t upgrade(EchoDaemon &d, pid_t from, long tasks = -1)
{
	CommandResult r = d.shoalctl({"upgrade"});
	INFO(r.output << "\n--- daemon log ---\n" << d.log_text());
	REQUIRE(r.status == 0);
	REQUIRE(r.output.find("upgraded: pid " + std::to_string(from) + " -> pid ") != std::string::npos);
	if (tasks >= 0)
		CHECK(r.output.find(", " + std::to_string(tasks) + " tasks handed over") != std::string::npos);
	pid_t now = d.serving_pid();
	REQUIRE(now != from);
	/* the old process is gone, not lingering */
	for (int i = 0; i < 500 && ::kill(from, 0) == 0; i++) {
		::waitpid(from, nullptr, WNOHANG);
		std::this_thread::sleep_for(10ms);
	}
	CHECK(::kill(from, 0) != 0);
	return now;
}

void write_script(const std::string &path, const std::string &text)
{
	FILE *f = std::fopen(path.c_str(), "w");
	REQUIRE(f);
	std::fputs(text.c_str(), f);
	std::fclose(f);
	::chmod(path.c_str(), 0755);
}

std::string read_file(const std::string &path)
{
	std::string out;
	for (int i = 0; i < 200 && out.empty(); i++) {
		if (FILE *f = std::fopen(path.c_str(), "r")) {
			char buf[64] = {};
			std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
			std::fclose(f);
			out.assign(buf, n);
		}
		if (out.empty())
			std::this_thread::sleep_for(10ms);
	}
	return out;
}

} // namespace

TEST_CASE("a live upgrade moves clients, tasks and mailbox results", "[upgrade]")
{
	EchoDaemon d;
	pid_t first = d.process.pid();
	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "proxy"}})->op() == "welcome");

	std::vector<UniqueFd> mine;
	for (int i = 0; i < 10; i++) {
		auto [a, b] = stream_pair();
		start_echo(proxy, std::move(b));
		mine.push_back(std::move(a));
	}
	/* A result waiting for an owner who is away. */
	auto [away_mine, away_theirs] = stream_pair();
	{
		Client away = d.connect();
		REQUIRE(away.call("hello", {{"owner", "away"}})->op() == "welcome");
		start_echo(away, std::move(away_theirs));
	}
	away_mine.reset();
	for (int i = 0; i < 300; i++) {
		auto s = d.connect().call("status");
		if (s->json["mailbox"]["messages"] == 1)
			break;
		std::this_thread::sleep_for(10ms);
	}

	/* Bytes in flight: written before the upgrade, echoed after it. */
	for (auto &fd : mine)
		REQUIRE(::send(fd.get(), "in-flight", 9, 0) == 9);

	pid_t second = upgrade(d, first, 10);

	for (auto &fd : mine) {
		char buf[9];
		std::size_t got = 0;
		while (got < 9) {
			ssize_t n = ::recv(fd.get(), buf + got, 9 - got, 0);
			REQUIRE(n > 0);
			got += static_cast<std::size_t>(n);
		}
		CHECK(std::string(buf, 9) == "in-flight");
		CHECK(echo_roundtrip(fd.get(), "after the upgrade"));
	}
	/* The proxy's own connection survived: same socket, same owner. */
	auto s = proxy.call("status");
	REQUIRE(s);
	CHECK(s->json.at("pid") == second);
	CHECK(s->json.at("upgrades") == 1);
	CHECK(s->json.at("tasks") == 10);
	CHECK(s->json.at("mailbox").at("messages") == 1);
	CHECK(proxy.call("list")->json.at("tasks").size() == 10);

	Client back = d.connect();
	auto w = back.call("hello", {{"owner", "away"}});
	CHECK(w->json.at("mailbox") == 1);
	auto done = back.next_event(5s);
	REQUIRE(done);
	CHECK(done->op() == "done");
	CHECK(done->fds.size() == 1);

	/* SIGHUP does the same. */
	::kill(second, SIGHUP);
	pid_t third = second;
	for (int i = 0; i < 500 && third == second; i++) {
		std::this_thread::sleep_for(10ms);
		third = d.serving_pid();
	}
	REQUIRE(third != second);
	for (auto &fd : mine)
		CHECK(echo_roundtrip(fd.get(), "after SIGHUP"));
	CHECK(proxy.call("status")->json.at("upgrades") == 2);

	/* A task ending now reports to the proxy's connection, which has crossed two processes. */
	mine[0].reset();
	auto ended = proxy.next_event(5s);
	REQUIRE(ended);
	CHECK(ended->op() == "done");
	CHECK(ended->json.at("reason") == "eof");
}

TEST_CASE("1,000 live tasks survive three upgrades in a row", "[upgrade-1000]")
{
	EchoDaemon d({"--log-level", "info"});
	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "load"}})->op() == "welcome");
	std::vector<UniqueFd> mine;
	for (int i = 0; i < 1000; i++) {
		auto [a, b] = stream_pair();
		start_echo(proxy, std::move(b));
		mine.push_back(std::move(a));
	}
	pid_t pid = d.process.pid();
	for (int round = 0; round < 3; round++) {
		std::string msg = "round " + std::to_string(round) + " ";
		for (std::size_t i = 0; i < mine.size(); i++) {
			std::string m = msg + std::to_string(i);
			REQUIRE(::send(mine[i].get(), m.data(), m.size(), 0) == static_cast<ssize_t>(m.size()));
		}
		pid = upgrade(d, pid, 1000);
		std::size_t ok = 0;
		for (std::size_t i = 0; i < mine.size(); i++) {
			std::string m = msg + std::to_string(i);
			std::string got(m.size(), '\0');
			std::size_t n = 0;
			while (n < m.size()) {
				ssize_t r = ::recv(mine[i].get(), got.data() + n, m.size() - n, 0);
				if (r <= 0)
					break;
				n += static_cast<std::size_t>(r);
			}
			ok += got == m;
		}
		CHECK(ok == 1000);
		auto s = proxy.call("status");
		CHECK(s->json.at("tasks") == 1000);
		CHECK(s->json.at("upgrades") == round + 1);
	}
}

TEST_CASE("a failed upgrade leaves the old process serving", "[upgrade-failure]")
{
	auto check_still_serving = [](EchoDaemon &d, UniqueFd &mine, pid_t pid) {
		CHECK(d.serving_pid() == pid);
		CHECK(echo_roundtrip(mine.get(), "still served"));
	};

	SECTION("the new binary exits at once") {
		EchoDaemon d({"--upgrade-binary", "/bin/false"});
		Client c = d.connect();
		auto [mine, theirs] = stream_pair();
		start_echo(c, std::move(theirs));
		CommandResult r = d.shoalctl({"upgrade"});
		CHECK(r.status == 1);
		CHECK(r.output.find("internal") != std::string::npos);
		CHECK(r.output.find("exited with status 1") != std::string::npos);
		check_still_serving(d, mine, d.process.pid());
		CHECK(c.call("status")->json.at("counters").at("upgrades_failed") == 1);
	}
	SECTION("the new binary does not exist") {
		EchoDaemon d({"--upgrade-binary", "/nonexistent/shoal-echod"});
		Client c = d.connect();
		auto [mine, theirs] = stream_pair();
		start_echo(c, std::move(theirs));
		CommandResult r = d.shoalctl({"upgrade"});
		CHECK(r.status == 1);
		CHECK(r.output.find("failed to start") != std::string::npos);
		check_still_serving(d, mine, d.process.pid());
	}
	SECTION("the new process never becomes ready") {
		TempDir tmp;
		std::string script = tmp / "hang.sh";
		std::string pidfile = tmp / "pid";
		write_script(script, "#!/bin/sh\necho $$ > " + pidfile + "\nexec sleep 30\n");
		std::string cfg = tmp / "slow.json";
		write_script(cfg, "{ \"upgrade\": { \"binary\": \"" + script + "\", \"timeout_ms\": 500 } }\n");
		EchoDaemon d({"--config", cfg});
		Client c = d.connect();
		auto [mine, theirs] = stream_pair();
		start_echo(c, std::move(theirs));
		CommandResult r = d.shoalctl({"upgrade"});
		CHECK(r.status == 1);
		CHECK(r.output.find("did not become ready") != std::string::npos);
		check_still_serving(d, mine, d.process.pid());
		/* the daemon ended the child it started */
		pid_t child = std::stoi(read_file(pidfile));
		bool gone = false;
		for (int i = 0; i < 200 && !gone; i++) {
			gone = ::kill(child, 0) != 0;
			std::this_thread::sleep_for(10ms);
		}
		CHECK(gone);
		/* a second attempt is possible afterwards (the first is fully cleaned up) */
		CommandResult again = d.shoalctl({"upgrade"});
		CHECK(again.status == 1);
		CHECK(again.output.find("did not become ready") != std::string::npos);
	}
	SECTION("two upgrades at once: the second is refused with busy") {
		TempDir tmp;
		std::string script = tmp / "hang.sh";
		write_script(script, "#!/bin/sh\nexec sleep 30\n");
		std::string cfg = tmp / "slow.json";
		write_script(cfg, "{ \"upgrade\": { \"binary\": \"" + script + "\", \"timeout_ms\": 1500 } }\n");
		EchoDaemon d({"--config", cfg});
		Client first = d.connect();
		auto id = first.send("upgrade_daemon");
		REQUIRE(id);
		std::this_thread::sleep_for(100ms);
		CommandResult r = d.shoalctl({"upgrade"});
		CHECK(r.status == 1);
		CHECK(r.output.find("busy") != std::string::npos);
		auto failed = first.wait_reply(*id, 5s);
		REQUIRE(failed);
		CHECK(failed->is_error());
	}
}
