// A shoal-echod daemon per test: its own socket in its own temp dir, stopped at the end.
#pragma once

#include <string>
#include <vector>

#include <sys/socket.h>

#include <shoal/fdpass/unique_fd.h>

#include "client.h"
#include "process.h"

namespace shoal::test {

struct EchoDaemon {
	TempDir dir;
	std::string socket = dir / "echod.sock";
	std::string log = dir / "echod.log";
	Process process;

	/* Starts shoal-echod --socket <socket> extra…; REQUIREs that it serves within 10 s. */
	explicit EchoDaemon(const std::vector<std::string> &extra = {},
			    const std::map<std::string, std::string> &env = {});
	/* Stops whichever process serves now (a live upgrade's successor is ours to end too). */
	~EchoDaemon();
	Client connect();
	/* The pid currently serving (changes after a live upgrade). */
	pid_t serving_pid();
	std::string log_text() const;
	CommandResult shoalctl(const std::vector<std::string> &args);
};

/* Waits (up to 2 s) until pid has exactly expected descriptors open: closes happen on its loop. */
bool wait_fd_count(pid_t pid, std::size_t expected);

/* pid's descriptor count once it has stopped changing (a baseline for leak checks). */
std::size_t stable_fd_count(pid_t pid);

/* A connected AF_UNIX stream socketpair, close-on-exec. */
std::pair<UniqueFd, UniqueFd> stream_pair();

/* Writes all of data, then reads exactly data.size() bytes back with a timeout; true if equal. */
bool echo_roundtrip(int fd, const std::string &data);

} // namespace shoal::test
