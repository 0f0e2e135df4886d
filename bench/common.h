// Small helpers the benchmark tools share: argument parsing, loopback TCP sockets, clocks, limits.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bench {

[[noreturn]] inline void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::vfprintf(stderr, fmt, ap);
	va_end(ap);
	std::fputc('\n', stderr);
	std::exit(1);
}

/* --key value pairs and bare --flags; anything else is a usage error. */
class Args {
public:
	Args(int argc, char **argv, const char *usage) : usage_(usage)
	{
		for (int i = 1; i < argc; i++) {
			std::string a = argv[i];
			if (a == "--help" || a == "-h") {
				std::fputs(usage, stdout);
				std::exit(0);
			}
			if (a.rfind("--", 0) != 0)
				die("unexpected argument %s\n%s", a.c_str(), usage);
			if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0)
				values_[a.substr(2)] = argv[++i];
			else
				values_[a.substr(2)] = "";
		}
	}
	std::string str(const std::string &key, const char *def = nullptr) const
	{
		auto it = values_.find(key);
		if (it != values_.end())
			return it->second;
		if (!def)
			die("--%s is required\n%s", key.c_str(), usage_);
		return def;
	}
	std::uint64_t num(const std::string &key, std::uint64_t def) const
	{
		auto it = values_.find(key);
		if (it == values_.end())
			return def;
		char *end = nullptr;
		errno = 0;
		unsigned long long v = std::strtoull(it->second.c_str(), &end, 10);
		if (errno || end == it->second.c_str() || *end)
			die("--%s: not a number: %s", key.c_str(), it->second.c_str());
		return v;
	}
	bool flag(const std::string &key) const { return values_.count(key) != 0; }

private:
	const char *usage_;
	std::map<std::string, std::string> values_;
};

/* "127.0.0.1:PORT" (IPv4 only: the benchmark runs on loopback). */
inline sockaddr_in parse_endpoint(const std::string &s)
{
	sockaddr_in sa{};
	auto colon = s.rfind(':');
	if (colon == std::string::npos)
		die("not an IPv4 endpoint: %s", s.c_str());
	sa.sin_family = AF_INET;
	if (::inet_pton(AF_INET, s.substr(0, colon).c_str(), &sa.sin_addr) != 1)
		die("not an IPv4 address: %s", s.c_str());
	int port = std::atoi(s.c_str() + colon + 1);
	if (port <= 0 || port > 65535)
		die("bad port: %s", s.c_str());
	sa.sin_port = htons(static_cast<std::uint16_t>(port));
	return sa;
}

/* Ten thousand relays need far more descriptors than the usual soft limit of 1024. */
inline void raise_nofile()
{
	rlimit rl{};
	if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &rl);
	}
}

inline void set_nodelay(int fd)
{
	int one = 1;
	::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Close with an RST rather than a FIN, so that no TIME_WAIT is left behind on loopback ports. */
inline void close_abort(int fd)
{
	linger l{1, 0};
	::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	::close(fd);
}

inline int tcp_listen(const sockaddr_in &sa, int backlog = 4096)
{
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", std::strerror(errno));
	int one = 1;
	::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (::bind(fd, reinterpret_cast<const sockaddr *>(&sa), sizeof sa) < 0)
		die("bind: %s", std::strerror(errno));
	if (::listen(fd, backlog) < 0)
		die("listen: %s", std::strerror(errno));
	return fd;
}

/* A non-blocking connect; returns the fd (connecting or connected) or -1 with errno set. */
inline int tcp_connect_nb(const sockaddr_in &sa)
{
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_nodelay(fd);
	if (::connect(fd, reinterpret_cast<const sockaddr *>(&sa), sizeof sa) < 0 && errno != EINPROGRESS) {
		int e = errno;
		::close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

inline int socket_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t)
{
	return std::chrono::duration<double>(Clock::now() - t).count();
}

/* Milliseconds until deadline for epoll_wait/poll, at least 0. */
inline int ms_until(Clock::time_point deadline)
{
	auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
	return ms < 0 ? 0 : static_cast<int>(ms + 1);
}

/* Our own CPU time (user + system): if it approaches the wall time, the load generator, not the daemon, is the limit. */
inline double cpu_seconds()
{
	rusage ru{};
	::getrusage(RUSAGE_SELF, &ru);
	return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A blocking connection to a daemon's control socket (AF_UNIX SOCK_SEQPACKET); dies on failure. */
inline int connect_unix(const std::string &path)
{
	int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", std::strerror(errno));
	sockaddr_un sun{};
	sun.sun_family = AF_UNIX;
	if (path.size() >= sizeof sun.sun_path)
		die("socket path too long: %s", path.c_str());
	std::memcpy(sun.sun_path, path.c_str(), path.size());
	if (::connect(fd, reinterpret_cast<sockaddr *>(&sun), sizeof sun) < 0)
		die("connect %s: %s", path.c_str(), std::strerror(errno));
	return fd;
}

/* The command lines a tool reads on stdin ("open 100", "close"), as they come in. */
class StdinCommands {
public:
	/* Reads what stdin has; false at EOF or on an error. */
	bool read_more()
	{
		char b[256];
		ssize_t r = ::read(0, b, sizeof b);
		if (r <= 0)
			return false;
		buf_.append(b, static_cast<std::size_t>(r));
		return true;
	}
	/* The next complete line, without its newline. */
	std::optional<std::string> next()
	{
		std::size_t nl = buf_.find('\n');
		if (nl == std::string::npos)
			return std::nullopt;
		std::string cmd = buf_.substr(0, nl);
		buf_.erase(0, nl + 1);
		return cmd;
	}

private:
	std::string buf_;
};

} // namespace bench
