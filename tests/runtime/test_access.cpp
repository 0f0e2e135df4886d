// Access control: SO_PEERCRED allow-list and the control socket's file mode.
#include <catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_fixture.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

constexpr uid_t kNobody = 65534;

/*
 * Connects as uid/gid nobody from a forked child and reports what the daemon said:
 * 0 = served (status answered), 1 = denied then closed, other = unexpected.
 */
int connect_as_nobody(const std::string &socket)
{
	pid_t pid = ::fork();
	if (pid == 0) {
		if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)
			::_exit(10);
		auto c = Client::connect(socket);
		if (!c)
			::_exit(11);
		auto id = c->send("status");
		auto r = c->receive(5s);
		if (!r)
			::_exit(12);
		if (r->op() == "status")
			::_exit(0);
		if (r->is_error() && r->json.value("code", "") == "denied") {
			auto eof = c->receive(5s);
			::_exit(!eof && eof.error() == EPIPE ? 1 : 13);
		}
		::_exit(14);
	}
	int st = 0;
	::waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

} // namespace

TEST_CASE("a peer outside the allow-list is denied and disconnected", "[access]")
{
	if (::geteuid() != 0)
		std::exit(77); /* meson's "skipped": switching to another uid needs root */

	TempDir cfgdir;
	::chmod(cfgdir.path().c_str(), 0755);
	std::string cfg = cfgdir / "open.json";
	/* World-writable socket file, so only SO_PEERCRED stands between nobody and the daemon. */
	write_file(cfg, "{ \"socket_mode\": \"0666\" }\n");

	SECTION("not allowed") {
		EchoDaemon d({"--config", cfg});
		::chmod(d.dir.path().c_str(), 0755);
		std::size_t fds = stable_fd_count(d.process.pid());
		CHECK(connect_as_nobody(d.socket) == 1);
		Client c = d.connect();
		auto s = c.call("status");
		REQUIRE(s);
		CHECK(s->json.at("counters").at("denied") == 1);
		CHECK(wait_fd_count(d.process.pid(), fds + 1));
		CHECK(d.log_text().find("not in the allow-list") != std::string::npos);
	}
	SECTION("allowed by user") {
		EchoDaemon d({"--config", cfg, "--allow-user", std::to_string(kNobody)});
		::chmod(d.dir.path().c_str(), 0755);
		CHECK(connect_as_nobody(d.socket) == 0);
	}
	SECTION("allowed by group") {
		EchoDaemon d({"--config", cfg, "--allow-group", std::to_string(kNobody)});
		::chmod(d.dir.path().c_str(), 0755);
		CHECK(connect_as_nobody(d.socket) == 0);
	}
}

TEST_CASE("the control socket is created with mode 0660", "[access]")
{
	EchoDaemon d;
	struct stat st {};
	REQUIRE(::lstat(d.socket.c_str(), &st) == 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK((st.st_mode & 0777) == 0660);
}
