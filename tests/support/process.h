// Test helpers: start a daemon as a real child process, wait for its socket, count its fds, stop it.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace shoal::test {

/* A child process; killed (SIGKILL) and reaped by the destructor if still running. */
class Process {
public:
	Process() = default;
	Process(Process &&o) noexcept;
	Process &operator=(Process &&o) noexcept;
	~Process();

	/* fork + exec argv with extra environment; stdout/stderr go to log_path when given. */
	static Process spawn(const std::vector<std::string> &argv, const std::map<std::string, std::string> &env = {},
			     const std::string &log_path = {});

	pid_t pid() const { return pid_; }
	bool running();
	void signal(int sig);
	/* Waits for exit; the exit status (or 128+signal), nullopt on timeout. */
	std::optional<int> wait(std::chrono::milliseconds timeout);

private:
	pid_t pid_ = -1;
	std::optional<int> status_;
};

/* Runs a command to completion; returns its exit status and captured stdout+stderr. */
struct CommandResult {
	int status = -1;
	std::string output;
};
CommandResult run_command(const std::vector<std::string> &argv, std::chrono::milliseconds timeout = std::chrono::seconds(60));

/* Waits until something accepts on a SOCK_SEQPACKET socket at path. */
bool wait_for_socket(const std::string &path, std::chrono::milliseconds timeout);

/* Open descriptors of another process (/proc/PID/fd). */
std::size_t count_fds_of(pid_t pid);

/* A fresh directory under /tmp, removed with its contents by the destructor. */
class TempDir {
public:
	TempDir();
	~TempDir();
	const std::string &path() const { return path_; }
	std::string operator/(const std::string &name) const { return path_ + "/" + name; }

private:
	std::string path_;
};

/* Writes text to path (throws if it cannot); returns path. */
std::string write_file(const std::string &path, const std::string &text);

/* Where meson put the binaries (SHOAL_BUILD_DIR), for tests that start daemons. */
std::string build_path(const std::string &relative);

/* Raises RLIMIT_NOFILE to its hard limit (tests that hold thousands of sockets). */
void raise_fd_limit();

} // namespace shoal::test
