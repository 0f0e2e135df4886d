// TestDaemon fixture and socket helpers for the integration tests.
#include "daemon_fixture.h"

#include <catch.hpp>
#include <algorithm>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <csignal>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sstream>
#include <unistd.h>

namespace shoal::test {

TestDaemon::TestDaemon(const std::string &binary, const std::vector<std::string> &extra,
		       const std::map<std::string, std::string> &env)
{
	raise_fd_limit();
	/* Successors started by live upgrades are re-parented to us, so we can reap them. */
	::prctl(PR_SET_CHILD_SUBREAPER, 1);
	std::vector<std::string> argv = {build_path(binary), "--socket", socket};
	if (std::find(extra.begin(), extra.end(), "--log-level") == extra.end())
		argv.insert(argv.end(), {"--log-level", "debug"});
	argv.insert(argv.end(), extra.begin(), extra.end());
	process = Process::spawn(argv, env, log);
	bool up = wait_for_socket(socket, std::chrono::seconds(10));
	if (!up)
		FAIL(binary << " did not start:\n" << log_text());
}

TestDaemon::~TestDaemon()
{
	/*
	 * The process serving now may be a live upgrade's successor, re-parented to us. Every
	 * process of this daemon names our (unique, per-test) socket on its command line: end
	 * those, by pid, whatever state they are in.
	 */
	process.signal(SIGKILL);
	(void)process.wait(std::chrono::seconds(5));
	for (const auto &entry : std::filesystem::directory_iterator("/proc")) {
		const std::string name = entry.path().filename();
		if (name.find_first_not_of("0123456789") != std::string::npos)
			continue;
		std::ifstream f(entry.path() / "cmdline");
		std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
		if (cmdline.find(socket) == std::string::npos)
			continue;
		pid_t pid = static_cast<pid_t>(std::stol(name));
		if (pid == ::getpid())
			continue;
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
	}
}

Client TestDaemon::connect()
{
	auto c = Client::connect(socket);
	REQUIRE(c);
	return std::move(*c);
}

pid_t TestDaemon::serving_pid()
{
	Client c = connect();
	auto r = c.call("status");
	REQUIRE(r);
	return r->json.at("pid").get<pid_t>();
}

std::string TestDaemon::log_text() const
{
	std::ifstream f(log);
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

CommandResult TestDaemon::shoalctl(const std::vector<std::string> &args)
{
	std::vector<std::string> argv = {build_path("services/shoalctl/shoalctl"), "--socket", socket};
	argv.insert(argv.end(), args.begin(), args.end());
	return run_command(argv);
}

void require_error(const Result<ClientMessage> &r, const std::string &code, const std::string &needle)
{
	REQUIRE(r);
	INFO(r->json.dump());
	REQUIRE(r->is_error());
	CHECK(r->json.at("code") == code);
	CHECK(r->json.at("v") == 1);
	if (!needle.empty())
		CHECK(r->json.at("message").get<std::string>().find(needle) != std::string::npos);
}

std::string start_echo(Client &c, UniqueFd theirs, const nlohmann::json &metadata)
{
	int fd = theirs.get();
	auto r = c.call("echo", {{"metadata", metadata}}, std::span<const int>(&fd, 1));
	REQUIRE(r);
	REQUIRE(r->op() == "accepted");
	return r->json.at("task").get<std::string>();
}

bool wait_fd_count(pid_t pid, std::size_t expected)
{
	for (int i = 0; i < 200; i++) {
		if (count_fds_of(pid) == expected)
			return true;
		::usleep(10000);
	}
	return false;
}

std::size_t stable_fd_count(pid_t pid)
{
	std::size_t last = count_fds_of(pid);
	int same = 0;
	for (int i = 0; i < 300 && same < 10; i++) {
		::usleep(20000);
		std::size_t now = count_fds_of(pid);
		same = now == last ? same + 1 : 0;
		last = now;
	}
	return last;
}

std::pair<UniqueFd, UniqueFd> stream_pair()
{
	int sv[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

bool echo_roundtrip(int fd, const std::string &data)
{
	std::size_t sent = 0;
	while (sent < data.size()) {
		ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		sent += static_cast<std::size_t>(n);
	}
	std::string got;
	while (got.size() < data.size()) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 5000) <= 0)
			return false;
		char buf[65536];
		ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return false;
		got.append(buf, static_cast<std::size_t>(n));
	}
	return got == data;
}

} // namespace shoal::test
