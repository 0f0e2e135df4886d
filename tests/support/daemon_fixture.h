// A daemon per test (shoal-echod, splicer, …): its own socket in its own temp dir, stopped at the end.
#pragma once

#include <string>
#include <vector>

#include <sys/socket.h>

#include <shoal/fdpass/unique_fd.h>

#include "client.h"
#include "process.h"

namespace shoal::test {

struct TestDaemon {
	TempDir dir;
	std::string socket = dir / "daemon.sock";
	std::string log = dir / "daemon.log";
	Process process;

	/* Starts BINARY --socket <socket> extra… (binary relative to the build dir); REQUIREs that it serves within 10 s. */
	TestDaemon(const std::string &binary, const std::vector<std::string> &extra,
		   const std::map<std::string, std::string> &env = {});
	/* Stops whichever process serves now (a live upgrade's successor is ours to end too). */
	~TestDaemon();
	Client connect();
	/* The pid currently serving (changes after a live upgrade). */
	pid_t serving_pid();
	std::string log_text() const;
	CommandResult shoalctl(const std::vector<std::string> &args);
};

/* The runtime's test service. */
struct EchoDaemon : TestDaemon {
	explicit EchoDaemon(const std::vector<std::string> &extra = {},
			    const std::map<std::string, std::string> &env = {})
		: TestDaemon("tests/shoal-echod", extra, env)
	{
	}
};

/* REQUIREs an error reply (v 1) with code, whose message contains needle. */
void require_error(const Result<ClientMessage> &r, const std::string &code, const std::string &needle = {});

/* Hands theirs to shoal-echod with echo {metadata}; REQUIREs accepted and returns the task. */
std::string start_echo(Client &c, UniqueFd theirs, const nlohmann::json &metadata = nullptr);

/* Waits (up to 2 s) until pid has exactly expected descriptors open: closes happen on its loop. */
bool wait_fd_count(pid_t pid, std::size_t expected);

/* pid's descriptor count once it has stopped changing (a baseline for leak checks). */
std::size_t stable_fd_count(pid_t pid);

/* A connected AF_UNIX stream socketpair, close-on-exec. */
std::pair<UniqueFd, UniqueFd> stream_pair();

/* Writes all of data, then reads exactly data.size() bytes back with a timeout; true if equal. */
bool echo_roundtrip(int fd, const std::string &data);

} // namespace shoal::test
