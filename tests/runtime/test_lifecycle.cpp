// Start, stop and the world around a daemon: stale sockets, socket activation, sd_notify, metrics, the CLIs.
#include <catch.hpp>

#include <csignal>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

#include "daemon_fixture.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

bool exists(const std::string &path)
{
	struct stat st {};
	return ::lstat(path.c_str(), &st) == 0;
}

UniqueFd bound_unix(int type, const std::string &path)
{
	UniqueFd s(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
	sockaddr_un a{};
	a.sun_family = AF_UNIX;
	std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
	REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
	return s;
}

int free_tcp_port()
{
	UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
	socklen_t len = sizeof(a);
	::getsockname(s.get(), reinterpret_cast<sockaddr *>(&a), &len);
	return ntohs(a.sin_port);
}

/* Collects sd_notify datagrams until one contains needle. */
std::string wait_notify(int sock, const std::string &needle, std::chrono::milliseconds timeout = 10s)
{
	std::string all;
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (std::chrono::steady_clock::now() < deadline) {
		char buf[4096];
		ssize_t n = ::recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			all.append(buf, static_cast<std::size_t>(n));
			all += "\n";
			if (all.find(needle) != std::string::npos)
				return all;
			continue;
		}
		std::this_thread::sleep_for(5ms);
	}
	FAIL("no sd_notify message with " << needle << "; got:\n" << all);
	return all;
}

} // namespace

TEST_CASE("SIGTERM hands every task back to its owner, then exits cleanly", "[stop]")
{
	EchoDaemon d;
	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "p"}})->op() == "welcome");
	std::vector<UniqueFd> mine;
	for (int i = 0; i < 3; i++) {
		auto [a, b] = stream_pair();
		start_echo(proxy, std::move(b));
		mine.push_back(std::move(a));
	}
	d.process.signal(SIGTERM);
	for (int i = 0; i < 3; i++) {
		auto done = proxy.next_event(5s);
		REQUIRE(done);
		CHECK(done->op() == "done");
		CHECK(done->json.at("reason") == "shutdown");
		REQUIRE(done->fds.size() == 1);
		/* the socket came back alive: it still reaches our end */
		REQUIRE(::send(done->fds[0].get(), "x", 1, 0) == 1);
		char b;
		CHECK(::recv(mine[static_cast<std::size_t>(i)].get(), &b, 1, 0) == 1);
	}
	auto st = d.process.wait(10s);
	REQUIRE(st);
	CHECK(*st == 0);
	CHECK_FALSE(exists(d.socket));
}

TEST_CASE("the control socket: stale files replaced, live sockets and other files refused", "[socket]")
{
	SECTION("a stale socket file is replaced") {
		TempDir tmp;
		std::string path = tmp / "stale.sock";
		bound_unix(SOCK_SEQPACKET, path); /* bound, closed, file left behind */
		REQUIRE(exists(path));
		Process p = Process::spawn({build_path("tests/shoal-echod"), "--socket", path}, {}, tmp / "log");
		REQUIRE(wait_for_socket(path, 10s));
		auto c = Client::connect(path);
		REQUIRE(c);
		CHECK(c->call("status")->op() == "status");
	}
	SECTION("a live daemon's socket is not stolen") {
		EchoDaemon d;
		CommandResult r = run_command({build_path("tests/shoal-echod"), "--socket", d.socket}, 10s);
		CHECK(r.status == 1);
		CHECK(r.output.find("another process is serving it") != std::string::npos);
		CHECK(d.serving_pid() == d.process.pid());
	}
	SECTION("a regular file is left alone") {
		TempDir tmp;
		std::string path = tmp / "not-a-socket";
		FILE *f = std::fopen(path.c_str(), "w");
		std::fputs("precious", f);
		std::fclose(f);
		CommandResult r = run_command({build_path("tests/shoal-echod"), "--socket", path}, 10s);
		CHECK(r.status == 1);
		CHECK(r.output.find("not a socket") != std::string::npos);
		struct stat st {};
		REQUIRE(::stat(path.c_str(), &st) == 0);
		CHECK(S_ISREG(st.st_mode));
	}
}

TEST_CASE("socket activation with the real systemd-socket-activate", "[socket-activation]")
{
	if (::access("/usr/bin/systemd-socket-activate", X_OK) != 0)
		std::exit(77);
	TempDir tmp;
	std::string path = tmp / "activated.sock";
	std::string log = tmp / "log";
	Process p = Process::spawn({"/usr/bin/systemd-socket-activate", "--seqpacket", "--fdname=control", "-l", path,
				    build_path("tests/shoal-echod"), "--socket", tmp / "unused.sock"},
				   {}, log);
	REQUIRE(wait_for_socket(path, 10s));
	auto c = Client::connect(path);
	REQUIRE(c);
	auto s = c->call("status");
	REQUIRE(s);
	CHECK(s->op() == "status");
	CHECK(s->json.at("pid") == p.pid()); /* systemd-socket-activate execs the daemon in place */
	CHECK_FALSE(exists(tmp / "unused.sock"));

	auto [mine, theirs] = stream_pair();
	start_echo(*c, std::move(theirs));
	CHECK(echo_roundtrip(mine.get(), "activated"));

	/* The socket belongs to whoever activated us: a stop leaves it in place. */
	p.signal(SIGTERM);
	auto st = p.wait(10s);
	REQUIRE(st);
	CHECK(*st == 0);
	CHECK(exists(path));
	std::string text;
	if (FILE *f = std::fopen(log.c_str(), "r")) {
		char buf[8192];
		text.assign(buf, std::fread(buf, 1, sizeof(buf), f));
		std::fclose(f);
	}
	CHECK(text.find("passed by systemd (control)") != std::string::npos);
}

TEST_CASE("sd_notify: READY, RELOADING, MAINPID across an upgrade, WATCHDOG, STOPPING", "[notify]")
{
	TempDir tmp;
	std::string notify = tmp / "notify";
	UniqueFd ns = bound_unix(SOCK_DGRAM, notify);
	EchoDaemon d({}, {{"NOTIFY_SOCKET", notify}, {"WATCHDOG_USEC", "200000"}});
	std::string first = wait_notify(ns.get(), "READY=1");
	CHECK(first.find("STATUS=serving") != std::string::npos);
	wait_notify(ns.get(), "WATCHDOG=1");

	CommandResult r = d.shoalctl({"upgrade"});
	REQUIRE(r.status == 0);
	pid_t now = d.serving_pid();
	std::string up = wait_notify(ns.get(), "MAINPID=" + std::to_string(now));
	CHECK(up.find("RELOADING=1") != std::string::npos);
	CHECK(up.find("MONOTONIC_USEC=") != std::string::npos);
	CHECK(up.find("READY=1") != std::string::npos);

	::kill(now, SIGTERM);
	wait_notify(ns.get(), "STOPPING=1");
}

TEST_CASE("Prometheus metrics over HTTP, kept across an upgrade", "[metrics]")
{
	if (::access("/usr/bin/curl", X_OK) != 0)
		std::exit(77);
	int port = free_tcp_port();
	std::string addr = "127.0.0.1:" + std::to_string(port);
	EchoDaemon d({"--metrics", addr});
	Client c = d.connect();
	auto [mine, theirs] = stream_pair();
	start_echo(c, std::move(theirs));
	CHECK(echo_roundtrip(mine.get(), "counted"));

	CommandResult m = run_command({"curl", "-sS", "--max-time", "5", "http://" + addr + "/metrics"});
	REQUIRE(m.status == 0);
	CHECK(m.output.find("shoal_up{daemon=\"shoal-echod\"} 1") != std::string::npos);
	CHECK(m.output.find("shoal_clients{daemon=\"shoal-echod\"} 1") != std::string::npos);
	CHECK(m.output.find("echod_tasks 1") != std::string::npos);
	CHECK(m.output.find("echod_bytes_total 7") != std::string::npos);

	REQUIRE(d.shoalctl({"upgrade"}).status == 0);
	CommandResult after = run_command({"curl", "-sS", "--max-time", "5", "http://" + addr + "/metrics"});
	REQUIRE(after.status == 0);
	CHECK(after.output.find("shoal_upgrades_total{daemon=\"shoal-echod\"} 1") != std::string::npos);
	CHECK(after.output.find("echod_tasks 1") != std::string::npos);
}

TEST_CASE("command lines: --help, --version, --print-config, errors, shoalctl", "[cli]")
{
	std::string echod = build_path("tests/shoal-echod");
	std::string ctl = build_path("services/shoalctl/shoalctl");

	CommandResult help = run_command({echod, "--help"});
	CHECK(help.status == 0);
	for (const char *flag : {"--socket", "--config", "--log-level", "--print-config", "--version", "--metrics",
				 "--upgrade-binary", "--allow-user", "--allow-group", "--max-tasks"})
		CHECK(help.output.find(flag) != std::string::npos);

	CommandResult version = run_command({echod, "--version"});
	CHECK(version.status == 0);
	CHECK(version.output.find("0.1.0") != std::string::npos);

	CommandResult pc = run_command({echod, "--print-config"});
	CHECK(pc.status == 0);
	auto parsed = nlohmann::json::parse(pc.output, nullptr, false, true);
	REQUIRE_FALSE(parsed.is_discarded());
	CHECK(parsed.at("limits").at("max_clients") == 256);
	CHECK(parsed.at("mailbox").at("ttl_ms") == 300000);
	CHECK(pc.output.find("// ") != std::string::npos);

	CommandResult bad = run_command({echod, "--no-such-flag"});
	CHECK(bad.status == 2);
	CHECK(bad.output.find("--no-such-flag") != std::string::npos);

	TempDir tmp;
	std::string cfg = tmp / "bad.json";
	FILE *f = std::fopen(cfg.c_str(), "w");
	std::fputs("{ \"limits\": { \"max_clientz\": 3 } }", f);
	std::fclose(f);
	CommandResult badcfg = run_command({echod, "--config", cfg, "--socket", tmp / "s"});
	CHECK(badcfg.status != 0);
	CHECK(badcfg.output.find("max_clientz") != std::string::npos);

	CHECK(run_command({ctl, "--help"}).status == 0);
	CHECK(run_command({ctl, "status"}).status == 2);
	CommandResult unreachable = run_command({ctl, "--socket", tmp / "nothing.sock", "status"});
	CHECK(unreachable.status == 3);

	EchoDaemon d;
	CommandResult st = d.shoalctl({"status"});
	CHECK(st.status == 0);
	CHECK(st.output.find("daemon: shoal-echod") != std::string::npos);
	CommandResult js = d.shoalctl({"--json", "status"});
	CHECK(js.status == 0);
	CHECK(nlohmann::json::parse(js.output).at("op") == "status");
	CommandResult nf = d.shoalctl({"cancel", "e999"});
	CHECK(nf.status == 1);
	CHECK(nf.output.find("not_found") != std::string::npos);
}
