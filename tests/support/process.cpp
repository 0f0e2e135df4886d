// Test helpers for real processes: spawn, wait, signal, fd counts, temp dirs.
#include "process.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <stdexcept>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace shoal::test {

Process::Process(Process &&o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }

Process &Process::operator=(Process &&o) noexcept
{
	if (this != &o) {
		this->~Process();
		pid_ = o.pid_;
		status_ = o.status_;
		o.pid_ = -1;
	}
	return *this;
}

Process::~Process()
{
	if (pid_ > 0 && !status_) {
		::kill(pid_, SIGKILL);
		int st;
		::waitpid(pid_, &st, 0);
	}
}

Process Process::spawn(const std::vector<std::string> &argv, const std::map<std::string, std::string> &env,
		       const std::string &log_path)
{
	pid_t pid = ::fork();
	if (pid < 0)
		throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
	if (pid == 0) {
		for (const auto &[k, v] : env)
			::setenv(k.c_str(), v.c_str(), 1);
		if (!log_path.empty()) {
			int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd >= 0) {
				::dup2(fd, 1);
				::dup2(fd, 2);
			}
		}
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		::execvp(args[0], args.data());
		::_exit(127);
	}
	Process p;
	p.pid_ = pid;
	return p;
}

bool Process::running()
{
	if (pid_ <= 0 || status_)
		return false;
	int st;
	pid_t r = ::waitpid(pid_, &st, WNOHANG);
	if (r == pid_) {
		status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		return false;
	}
	return true;
}

void Process::signal(int sig)
{
	if (running())
		::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (running()) {
		if (std::chrono::steady_clock::now() > deadline)
			return std::nullopt;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return status_;
}

CommandResult run_command(const std::vector<std::string> &argv, std::chrono::milliseconds timeout)
{
	char tmpl[] = "/tmp/shoal-cmd-XXXXXX";
	int fd = ::mkstemp(tmpl);
	::close(fd);
	Process p = Process::spawn(argv, {}, tmpl);
	CommandResult r;
	auto st = p.wait(timeout);
	r.status = st.value_or(-1);
	FILE *f = std::fopen(tmpl, "r");
	if (f) {
		char buf[4096];
		std::size_t n;
		while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
			r.output.append(buf, n);
		std::fclose(f);
	}
	::unlink(tmpl);
	return r;
}

bool wait_for_socket(const std::string &path, std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	while (std::chrono::steady_clock::now() < deadline) {
		int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		sockaddr_un addr{};
		addr.sun_family = AF_UNIX;
		std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
		int r = ::connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
		::close(s);
		if (r == 0)
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	return false;
}

std::size_t count_fds_of(pid_t pid)
{
	std::string dir = "/proc/" + std::to_string(pid) + "/fd";
	std::size_t n = 0;
	DIR *d = ::opendir(dir.c_str());
	if (!d)
		return 0;
	while (dirent *e = ::readdir(d))
		if (e->d_name[0] != '.')
			n++;
	::closedir(d);
	return n;
}

TempDir::TempDir()
{
	char tmpl[] = "/tmp/shoal-test-XXXXXX";
	if (!::mkdtemp(tmpl))
		throw std::runtime_error("mkdtemp failed");
	path_ = tmpl;
}

TempDir::~TempDir()
{
	std::error_code ec;
	std::filesystem::remove_all(path_, ec);
}

std::string write_file(const std::string &path, const std::string &text)
{
	FILE *f = std::fopen(path.c_str(), "w");
	if (!f || std::fputs(text.c_str(), f) < 0 || std::fclose(f) != 0)
		throw std::runtime_error("cannot write " + path);
	return path;
}

std::string build_path(const std::string &relative)
{
	const char *dir = std::getenv("SHOAL_BUILD_DIR");
	return std::string(dir ? dir : ".") + "/" + relative;
}

void raise_fd_limit()
{
	struct rlimit rl {};
	if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &rl);
	}
}

} // namespace shoal::test
