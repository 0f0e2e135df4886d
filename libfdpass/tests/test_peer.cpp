// peer_credentials/peer_pidfd on real Unix sockets, against this process and a forked child.
#include "fd_checks.h"
#include <catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

#include <shoal/fdpass/peer.h>
#include <shoal/fdpass/unique_fd.h>

using shoal::peer_credentials;
using shoal::peer_pidfd;
using shoal::UniqueFd;

using fdtest::is_cloexec;
using fdtest::is_open;
using fdtest::open_fds;

namespace {

/* The "Pid:" line of a pidfd's /proc/self/fdinfo entry; -2 when there is none. */
long fdinfo_pid(int fd)
{
	std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("Pid:", 0) == 0)
			return std::stol(line.substr(4));
	return -2;
}

std::pair<UniqueFd, UniqueFd> socket_pair(int type)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
	return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

const char *type_name(int type)
{
	switch (type) {
	case SOCK_STREAM: return "SOCK_STREAM";
	case SOCK_DGRAM: return "SOCK_DGRAM";
	case SOCK_SEQPACKET: return "SOCK_SEQPACKET";
	}
	return "?";
}

/* An abstract-namespace address private to this process. */
std::pair<sockaddr_un, socklen_t> abstract_address(const char *tag)
{
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	const int n = std::snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
				    "shoal-fdpass-test-%s-%d", tag, static_cast<int>(getpid()));
	return {addr, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n)};
}

} // namespace

TEST_CASE("peer_credentials on a socketpair is this process", "[peer]")
{
	const int type = GENERATE(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		for (int fd : {a.get(), b.get()}) {
			auto cred = peer_credentials(fd);
			REQUIRE(cred);
			CHECK(cred->pid == getpid());
			CHECK(cred->uid == geteuid());
			CHECK(cred->gid == getegid());
		}
		CHECK(open_fds() == before + 2);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("peer_pidfd on a socketpair is a close-on-exec pidfd for this process", "[peer]")
{
	const int type = GENERATE(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto pidfd = peer_pidfd(a.get());
		REQUIRE(pidfd);
		REQUIRE(pidfd->is_valid());
		CHECK(open_fds() == before + 3);
		CHECK(is_cloexec(pidfd->get()));
		CHECK(fdinfo_pid(pidfd->get()) == getpid());
		/* A real pidfd: signal 0 through it reaches us. */
		CHECK(syscall(SYS_pidfd_send_signal, pidfd->get(), 0, nullptr, 0) == 0);
		/* We are alive, so it is not readable. */
		pollfd p{pidfd->get(), POLLIN, 0};
		CHECK(poll(&p, 1, 0) == 0);

		/* Each call is a new descriptor. */
		auto second = peer_pidfd(b.get());
		REQUIRE(second);
		CHECK(second->get() != pidfd->get());
		CHECK(fdinfo_pid(second->get()) == getpid());
		CHECK(open_fds() == before + 4);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("peer_credentials and peer_pidfd name a forked child that connected", "[peer]")
{
	const bool root = geteuid() == 0;
	const uid_t child_uid = root ? 23456 : geteuid();
	const gid_t child_gid = root ? 12345 : getegid();
	const std::size_t before = open_fds();
	{
		UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		REQUIRE(listener.is_valid());
		auto [addr, len] = abstract_address("peer");
		REQUIRE(bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), len) == 0);
		REQUIRE(listen(listener.get(), 4) == 0);
		int hold[2];
		REQUIRE(pipe2(hold, O_CLOEXEC) == 0);
		UniqueFd hold_r(hold[0]), hold_w(hold[1]);

		const pid_t child = fork();
		REQUIRE(child >= 0);
		if (child == 0) {
			/* Child: become someone else (as root), connect, wait until told to go. */
			hold_w.reset();
			if (root && (setgroups(0, nullptr) != 0 || setresgid(child_gid, child_gid, child_gid) != 0 ||
				     setresuid(child_uid, child_uid, child_uid) != 0))
				_exit(10);
			const int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
			if (s < 0 || connect(s, reinterpret_cast<sockaddr *>(&addr), len) != 0)
				_exit(11);
			char c;
			while (read(hold_r.get(), &c, 1) > 0) {
			}
			_exit(0);
		}
		hold_r.reset();

		UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(conn.is_valid());
		auto cred = peer_credentials(conn.get());
		REQUIRE(cred);
		CHECK(cred->pid == child);
		CHECK(cred->uid == child_uid);
		CHECK(cred->gid == child_gid);

		auto pidfd = peer_pidfd(conn.get());
		REQUIRE(pidfd);
		CHECK(is_cloexec(pidfd->get()));
		CHECK(fdinfo_pid(pidfd->get()) == child);

		/* The pidfd follows the child: not readable while it lives, readable once it exits. */
		pollfd p{pidfd->get(), POLLIN, 0};
		CHECK(poll(&p, 1, 0) == 0);
		hold_w.reset();
		p.revents = 0;
		CHECK(poll(&p, 1, 5000) == 1);
		CHECK((p.revents & POLLIN) != 0);
		int status = 0;
		REQUIRE(waitpid(child, &status, 0) == child);
		CHECK(WIFEXITED(status));
		CHECK(WEXITSTATUS(status) == 0);

		/* Credentials are those of connect() time; they stay after the peer is gone. */
		cred = peer_credentials(conn.get());
		REQUIRE(cred);
		CHECK(cred->pid == child);
		CHECK(cred->uid == child_uid);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("peer functions on something that is not a socket: ENOTSOCK", "[peer]")
{
	const std::size_t before = open_fds();
	{
		int p[2];
		REQUIRE(pipe2(p, O_CLOEXEC) == 0);
		UniqueFd r(p[0]), w(p[1]);
		auto cred = peer_credentials(r.get());
		REQUIRE_FALSE(cred);
		CHECK(cred.error() == ENOTSOCK);
		auto pidfd = peer_pidfd(w.get());
		REQUIRE_FALSE(pidfd);
		CHECK(pidfd.error() == ENOTSOCK);
		CHECK(open_fds() == before + 2);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("peer functions on a bad descriptor: EBADF", "[peer]")
{
	const std::size_t before = open_fds();
	{
		auto cred = peer_credentials(-1);
		REQUIRE_FALSE(cred);
		CHECK(cred.error() == EBADF);
		auto pidfd = peer_pidfd(-1);
		REQUIRE_FALSE(pidfd);
		CHECK(pidfd.error() == EBADF);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("peer_pidfd on a socket without a peer process fails without leaking", "[peer]")
{
	const std::size_t before = open_fds();
	{
		/* An unconnected Unix socket has no peer. */
		UniqueFd lone(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
		REQUIRE(lone.is_valid());
		auto pidfd = peer_pidfd(lone.get());
		CHECK_FALSE(pidfd);

		/* Nor has a TCP connection, even to ourselves. */
		UniqueFd srv(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		REQUIRE(srv.is_valid());
		sockaddr_in sin{};
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		REQUIRE(bind(srv.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == 0);
		REQUIRE(listen(srv.get(), 1) == 0);
		socklen_t slen = sizeof(sin);
		REQUIRE(getsockname(srv.get(), reinterpret_cast<sockaddr *>(&sin), &slen) == 0);
		UniqueFd cli(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		REQUIRE(connect(cli.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == 0);
		pidfd = peer_pidfd(cli.get());
		CHECK_FALSE(pidfd);
		/* SO_PEERCRED on TCP reports "nobody": pid 0. Whatever it says, it is not us. */
		auto cred = peer_credentials(cli.get());
		if (cred) {
			CHECK(cred->pid == 0);
		}
		CHECK(open_fds() == before + 3);
	}
	CHECK(open_fds() == before);
}
