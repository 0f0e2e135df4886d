// socket_info and same_file on real TCP, UDP, Unix and netlink sockets, pipes and files.
#include "fd_checks.h"
#include <catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <shoal/fdpass/message.h>
#include <shoal/fdpass/socket_info.h>
#include <shoal/fdpass/unique_fd.h>

using shoal::same_file;
using shoal::socket_info;
using shoal::UniqueFd;

using fdtest::is_cloexec;
using fdtest::is_open;
using fdtest::open_fds;

namespace {

UniqueFd make_socket(int family, int type, int protocol = 0)
{
	UniqueFd fd(socket(family, type | SOCK_CLOEXEC, protocol));
	REQUIRE(fd.is_valid());
	return fd;
}

/* A TCP listener on 127.0.0.1 with a kernel-chosen port. */
UniqueFd tcp_listener(sockaddr_in &addr)
{
	UniqueFd fd = make_socket(AF_INET, SOCK_STREAM);
	addr = {};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
	REQUIRE(listen(fd.get(), 4) == 0);
	socklen_t len = sizeof(addr);
	REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr *>(&addr), &len) == 0);
	return fd;
}

} // namespace

TEST_CASE("socket_info: TCP listening and connected sockets", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		sockaddr_in addr{};
		UniqueFd listener = tcp_listener(addr);
		auto info = socket_info(listener.get());
		REQUIRE(info);
		CHECK(info->family == AF_INET);
		CHECK(info->type == SOCK_STREAM);
		CHECK(info->protocol == IPPROTO_TCP);
		CHECK(info->listening);

		UniqueFd client = make_socket(AF_INET, SOCK_STREAM);
		/* Not yet connected, not listening. */
		info = socket_info(client.get());
		REQUIRE(info);
		CHECK(info->type == SOCK_STREAM);
		CHECK_FALSE(info->listening);

		REQUIRE(connect(client.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0);
		UniqueFd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(server.is_valid());
		for (int fd : {client.get(), server.get()}) {
			info = socket_info(fd);
			REQUIRE(info);
			CHECK(info->family == AF_INET);
			CHECK(info->type == SOCK_STREAM);
			CHECK(info->protocol == IPPROTO_TCP);
			CHECK_FALSE(info->listening);
		}
		CHECK(open_fds() == before + 3);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: the type carries no SOCK_NONBLOCK or SOCK_CLOEXEC bits", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
		REQUIRE(fd.is_valid());
		auto info = socket_info(fd.get());
		REQUIRE(info);
		CHECK(info->type == SOCK_STREAM);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: UDP and IPv6", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		UniqueFd udp = make_socket(AF_INET, SOCK_DGRAM);
		auto info = socket_info(udp.get());
		REQUIRE(info);
		CHECK(info->family == AF_INET);
		CHECK(info->type == SOCK_DGRAM);
		CHECK(info->protocol == IPPROTO_UDP);
		CHECK_FALSE(info->listening);

		UniqueFd v6(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (v6.is_valid()) {
			info = socket_info(v6.get());
			REQUIRE(info);
			CHECK(info->family == AF_INET6);
			CHECK(info->type == SOCK_STREAM);
			CHECK(info->protocol == IPPROTO_TCP);
		} else {
			WARN("no IPv6 here");
		}
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: Unix stream; seqpacket and datagram sockets", "[socket_info]")
{
	const int type = GENERATE(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM);
	const std::size_t before = open_fds();
	{
		int sv[2];
		REQUIRE(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
		UniqueFd a(sv[0]), b(sv[1]);
		auto info = socket_info(a.get());
		REQUIRE(info);
		CHECK(info->family == AF_UNIX);
		CHECK(info->type == type);
		CHECK(info->protocol == 0);
		CHECK_FALSE(info->listening);

		if (type != SOCK_DGRAM) {
			UniqueFd listener = make_socket(AF_UNIX, type);
			sockaddr_un addr{};
			addr.sun_family = AF_UNIX;
			/* Autobind: an abstract name chosen by the kernel. */
			REQUIRE(bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(sa_family_t)) == 0);
			REQUIRE(listen(listener.get(), 1) == 0);
			info = socket_info(listener.get());
			REQUIRE(info);
			CHECK(info->family == AF_UNIX);
			CHECK(info->type == type);
			CHECK(info->listening);
		}
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: a netlink socket", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		UniqueFd nl = make_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		auto info = socket_info(nl.get());
		REQUIRE(info);
		CHECK(info->family == AF_NETLINK);
		CHECK(info->type == SOCK_RAW);
		CHECK(info->protocol == NETLINK_ROUTE);
		CHECK_FALSE(info->listening);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: pipes and files are ENOTSOCK; bad descriptors EBADF", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		int p[2];
		REQUIRE(pipe2(p, O_CLOEXEC) == 0);
		UniqueFd r(p[0]), w(p[1]);
		for (int fd : {r.get(), w.get()}) {
			auto info = socket_info(fd);
			REQUIRE_FALSE(info);
			CHECK(info.error() == ENOTSOCK);
		}
		UniqueFd mem(memfd_create("socket-info", MFD_CLOEXEC));
		REQUIRE(mem.is_valid());
		auto info = socket_info(mem.get());
		REQUIRE_FALSE(info);
		CHECK(info.error() == ENOTSOCK);

		UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
		REQUIRE(null.is_valid());
		info = socket_info(null.get());
		REQUIRE_FALSE(info);
		CHECK(info.error() == ENOTSOCK);

		info = socket_info(-1);
		REQUIRE_FALSE(info);
		CHECK(info.error() == EBADF);
		CHECK(open_fds() == before + 4);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("socket_info: a socket that came over SCM_RIGHTS", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		sockaddr_in addr{};
		UniqueFd listener = tcp_listener(addr);
		int sv[2];
		REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
		UniqueFd a(sv[0]), b(sv[1]);
		const int fds[] = {listener.get()};
		REQUIRE(shoal::send_message(a.get(), "listener", fds));
		auto m = shoal::recv_message(b.get());
		REQUIRE(m);
		REQUIRE(m->fds.size() == 1);
		auto info = socket_info(m->fds[0].get());
		REQUIRE(info);
		CHECK(info->family == AF_INET);
		CHECK(info->type == SOCK_STREAM);
		CHECK(info->listening);
		CHECK(same_file(m->fds[0].get(), listener.get()));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("same_file: duplicates are the same file; distinct opens are not", "[socket_info]")
{
	const std::size_t before = open_fds();
	{
		int p[2];
		REQUIRE(pipe2(p, O_CLOEXEC) == 0);
		UniqueFd r(p[0]), w(p[1]);
		UniqueFd r2 = r.dup();
		REQUIRE(r2.is_valid());
		UniqueFd r3(fcntl(r.get(), F_DUPFD, 100));
		REQUIRE(r3.is_valid());
		CHECK(same_file(r.get(), r.get()));
		CHECK(same_file(r.get(), r2.get()));
		CHECK(same_file(r2.get(), r.get()));
		CHECK(same_file(r.get(), r3.get()));
		/* The two ends of one pipe share an inode but are different open files. */
		CHECK_FALSE(same_file(r.get(), w.get()));

		int sv[2];
		REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		UniqueFd s1(sv[0]), s2(sv[1]);
		CHECK_FALSE(same_file(s1.get(), s2.get()));
		CHECK_FALSE(same_file(s1.get(), r.get()));
		UniqueFd s1dup = s1.dup();
		CHECK(same_file(s1dup.get(), s1.get()));

		/* Two open() calls of one path: one inode, two open files. */
		UniqueFd n1(open("/dev/null", O_RDONLY | O_CLOEXEC));
		UniqueFd n2(open("/dev/null", O_RDONLY | O_CLOEXEC));
		REQUIRE(n1.is_valid());
		REQUIRE(n2.is_valid());
		CHECK_FALSE(same_file(n1.get(), n2.get()));

		/* Not a descriptor: never the same as anything. */
		CHECK_FALSE(same_file(-1, r.get()));
		CHECK_FALSE(same_file(r.get(), -1));
		CHECK_FALSE(same_file(-1, -1));
		CHECK(open_fds() == before + 9);
	}
	CHECK(open_fds() == before);
}
