// send_message/recv_message on real socketpairs: bytes, SCM_RIGHTS, every error path, no fd leaks.
#include "fd_checks.h"
#include <catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <shoal/fdpass/message.h>
#include <shoal/fdpass/unique_fd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

using shoal::kKernelMaxFds;
using shoal::kProtocolMaxFds;
using shoal::kProtocolMaxMessage;
using shoal::recv_message;
using shoal::send_message;
using shoal::UniqueFd;

using fdtest::is_cloexec;
using fdtest::is_open;
using fdtest::open_fds;

namespace {

/* The kernel's own answer to "is this the same open file?", independent of libfdpass. */
bool kernel_same_file(int a, int b)
{
	const pid_t self = getpid();
	return syscall(SYS_kcmp, self, self, KCMP_FILE, a, b) == 0;
}

std::pair<UniqueFd, UniqueFd> socket_pair(int type)
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
	return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

/* A pipe without O_CLOEXEC: the received copies must be CLOEXEC on their own account. */
std::pair<UniqueFd, UniqueFd> make_pipe()
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	return {UniqueFd(p[0]), UniqueFd(p[1])};
}

std::string pipe_read(int r)
{
	char buf[256];
	const ssize_t n = read(r, buf, sizeof(buf));
	REQUIRE(n >= 0);
	return std::string(buf, static_cast<std::size_t>(n));
}

void pipe_write(int w, const std::string &s)
{
	REQUIRE(write(w, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
}

const char *type_name(int type)
{
	return type == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : "SOCK_DGRAM";
}

/* Is anything queued on sock? Checked without libfdpass. */
bool readable(int sock)
{
	char c;
	const ssize_t n = recv(sock, &c, 1, MSG_DONTWAIT | MSG_PEEK);
	return n >= 0;
}

/* Blocking operations get a time limit, so a missing MSG_DONTWAIT fails instead of hanging. */
void set_timeouts(int sock)
{
	timeval tv{2, 0};
	REQUIRE(setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	REQUIRE(setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
}

/* Sends fds split over several SCM_RIGHTS headers in one datagram, with raw sendmsg. */
void send_split(int sock, const std::string &data, const std::vector<std::vector<int>> &groups)
{
	std::size_t space = 0;
	for (const auto &g : groups)
		space += CMSG_SPACE(g.size() * sizeof(int));
	std::vector<char> control(space, 0);
	iovec iov{const_cast<char *>(data.data()), data.size()};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.data();
	msg.msg_controllen = control.size();
	cmsghdr *c = CMSG_FIRSTHDR(&msg);
	for (const auto &g : groups) {
		REQUIRE(c != nullptr);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(g.size() * sizeof(int));
		std::memcpy(CMSG_DATA(c), g.data(), g.size() * sizeof(int));
		c = CMSG_NXTHDR(&msg, c);
	}
	REQUIRE(sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

volatile sig_atomic_t g_sigpipes = 0;

/* Counts SIGPIPE instead of dying of it, for the duration of a test. */
class SigpipeCounter {
public:
	SigpipeCounter()
	{
		g_sigpipes = 0;
		struct sigaction sa {};
		sa.sa_handler = [](int) { g_sigpipes = g_sigpipes + 1; };
		sigemptyset(&sa.sa_mask);
		REQUIRE(sigaction(SIGPIPE, &sa, &old_) == 0);
	}
	~SigpipeCounter() { sigaction(SIGPIPE, &old_, nullptr); }
	SigpipeCounter(const SigpipeCounter &) = delete;
	SigpipeCounter &operator=(const SigpipeCounter &) = delete;

private:
	struct sigaction old_ {};
};

} // namespace

TEST_CASE("count_open_fds agrees with /proc/self/fd and tracks opens and closes", "[message]")
{
	const std::size_t before = open_fds();
	CHECK(shoal::count_open_fds() == before);
	{
		auto [r, w] = make_pipe();
		CHECK(shoal::count_open_fds() == before + 2);
		r.reset();
		CHECK(shoal::count_open_fds() == before + 1);
	}
	CHECK(shoal::count_open_fds() == before);
	CHECK(open_fds() == before);
}

TEST_CASE("bytes only: one datagram in; the same datagram out", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		REQUIRE(send_message(a.get(), "hello"));
		std::string binary("\0\x01\xff\0zz", 6);
		REQUIRE(send_message(a.get(), binary));
		std::string big(kProtocolMaxMessage, 'q');
		big.front() = '<';
		big.back() = '>';
		REQUIRE(send_message(a.get(), big));

		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "hello");
		CHECK(m->fds.empty());
		CHECK(m->error == 0);

		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == binary);
		CHECK(m->error == 0);

		/* Exactly the protocol's maximum fits the default max_size. */
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data == big);

		/* And the other way round. */
		REQUIRE(send_message(b.get(), "back"));
		m = recv_message(a.get());
		REQUIRE(m);
		CHECK(m->data == "back");

		auto none = recv_message(b.get());
		REQUIRE_FALSE(none);
		CHECK(none.error() == EAGAIN);
		CHECK(open_fds() == before + 2);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("message boundaries and order are kept; with fds on the right messages", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r1, w1] = make_pipe();
		auto [r2, w2] = make_pipe();
		const int two[] = {w1.get(), w2.get()};
		const int one[] = {w2.get()};
		REQUIRE(send_message(a.get(), "x"));
		REQUIRE(send_message(a.get(), std::string(1000, 'y'), two));
		REQUIRE(send_message(a.get(), "zzzzz", one));
		REQUIRE(send_message(a.get(), "last"));

		auto m1 = recv_message(b.get());
		auto m2 = recv_message(b.get());
		auto m3 = recv_message(b.get());
		auto m4 = recv_message(b.get());
		REQUIRE(m1);
		REQUIRE(m2);
		REQUIRE(m3);
		REQUIRE(m4);
		CHECK(m1->data == "x");
		CHECK(m1->fds.empty());
		CHECK(m2->data == std::string(1000, 'y'));
		REQUIRE(m2->fds.size() == 2);
		CHECK(kernel_same_file(m2->fds[0].get(), w1.get()));
		CHECK(kernel_same_file(m2->fds[1].get(), w2.get()));
		CHECK(m3->data == "zzzzz");
		REQUIRE(m3->fds.size() == 1);
		CHECK(kernel_same_file(m3->fds[0].get(), w2.get()));
		CHECK(m4->data == "last");
		CHECK(m4->fds.empty());
		CHECK(open_fds() == before + 9);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("a zero-length SOCK_DGRAM datagram is an empty message", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_DGRAM);
		REQUIRE(send_message(a.get(), ""));
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data.empty());
		CHECK(m->fds.empty());
		CHECK(m->error == 0);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("a zero-length SOCK_SEQPACKET datagram carrying an fd is a message; not the end", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		auto [r, w] = make_pipe();
		const int fds[] = {w.get()};
		REQUIRE(send_message(a.get(), "", fds));
		REQUIRE(send_message(a.get(), "after"));
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data.empty());
		REQUIRE(m->fds.size() == 1);
		pipe_write(m->fds[0].get(), "via-empty");
		CHECK(pipe_read(r.get()) == "via-empty");
		auto next = recv_message(b.get());
		REQUIRE(next);
		CHECK(next->data == "after");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("1 to 4 fds arrive close-on-exec and refer to the same files", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	const int n = GENERATE(1, 2, 3, 4);
	INFO(type_name(type) << " with " << n << " fds");
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		std::vector<UniqueFd> readers, writers;
		std::vector<int> raw;
		for (int i = 0; i < n; ++i) {
			auto [r, w] = make_pipe();
			REQUIRE_FALSE(is_cloexec(w.get()));
			raw.push_back(w.get());
			readers.push_back(std::move(r));
			writers.push_back(std::move(w));
		}
		REQUIRE(send_message(a.get(), "fds", raw));
		/* Borrowed: the sender's descriptors are all still open. */
		for (int fd : raw)
			CHECK(is_open(fd));
		CHECK(open_fds() == before + 2 + 2 * n);

		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data == "fds");
		REQUIRE(m->fds.size() == static_cast<std::size_t>(n));
		CHECK(open_fds() == before + 2 + 3 * n);

		/* Drop the sender's copies: the received ones must stand on their own. */
		writers.clear();
		for (int i = 0; i < n; ++i) {
			const int fd = m->fds[i].get();
			CHECK(is_cloexec(fd));
			const std::string word = "pipe-" + std::to_string(i);
			pipe_write(fd, word);
			/* In the order they were sent. */
			CHECK(pipe_read(readers[i].get()) == word);
		}
		CHECK(open_fds() == before + 2 + 2 * n);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("different kinds of descriptors survive the trip", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		auto [s1, s2] = socket_pair(SOCK_STREAM);
		UniqueFd mem(memfd_create("fdpass-test", MFD_CLOEXEC));
		REQUIRE(mem.is_valid());
		REQUIRE(pwrite(mem.get(), "memfd!", 6, 0) == 6);
		/* A socket can carry a socket whose own peer is the sender. */
		const int fds[] = {s1.get(), mem.get(), a.get()};
		REQUIRE(send_message(a.get(), "kinds", fds));
		auto m = recv_message(b.get());
		REQUIRE(m);
		REQUIRE(m->error == 0);
		REQUIRE(m->fds.size() == 3);

		CHECK(send(m->fds[0].get(), "sock", 4, 0) == 4);
		char buf[16] = {};
		CHECK(recv(s2.get(), buf, sizeof(buf), MSG_DONTWAIT) == 4);
		CHECK(std::string(buf, 4) == "sock");

		char mbuf[6];
		CHECK(pread(m->fds[1].get(), mbuf, 6, 0) == 6);
		CHECK(std::string(mbuf, 6) == "memfd!");

		CHECK(kernel_same_file(m->fds[2].get(), a.get()));
		REQUIRE(send_message(m->fds[2].get(), "through the copy"));
		auto echo = recv_message(b.get());
		REQUIRE(echo);
		CHECK(echo->data == "through the copy");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("fds split over several SCM_RIGHTS headers arrive as one list", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		std::vector<UniqueFd> readers, writers;
		for (int i = 0; i < 5; ++i) {
			auto [r, w] = make_pipe();
			readers.push_back(std::move(r));
			writers.push_back(std::move(w));
		}
		const std::size_t base = open_fds();
		send_split(a.get(), "two+two", {{writers[0].get(), writers[1].get()},
						{writers[2].get(), writers[3].get()}});
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		REQUIRE(m->fds.size() == 4);
		for (int i = 0; i < 4; ++i)
			CHECK(kernel_same_file(m->fds[i].get(), writers[i].get()));
		m->fds.clear();
		CHECK(open_fds() == base);

		/* Split, and one too many in total: all of them are closed. */
		send_split(a.get(), "two+three", {{writers[0].get(), writers[1].get()},
						  {writers[2].get(), writers[3].get(), writers[4].get()}});
		auto over = recv_message(b.get());
		REQUIRE(over);
		CHECK(over->error == ETOOMANYREFS);
		CHECK(over->fds.empty());
		CHECK(open_fds() == base);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("more than max_fds: ETOOMANYREFS; every arrived fd closed; socket still usable", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	/* {max_fds, sent} */
	const auto limits = GENERATE(std::pair<std::size_t, std::size_t>{4, 5},
				     std::pair<std::size_t, std::size_t>{0, 1},
				     std::pair<std::size_t, std::size_t>{2, 3},
				     std::pair<std::size_t, std::size_t>{4, 64},
				     std::pair<std::size_t, std::size_t>{1, kKernelMaxFds});
	const std::size_t max_fds = limits.first, sent = limits.second;
	INFO(type_name(type) << ": max_fds " << max_fds << ", sent " << sent);
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		std::vector<int> raw(sent, w.get());
		REQUIRE(send_message(a.get(), "too many", raw));
		const std::size_t base = open_fds();

		auto m = recv_message(b.get(), kProtocolMaxMessage, max_fds);
		REQUIRE(m);
		CHECK(m->error == ETOOMANYREFS);
		CHECK(m->fds.empty());
		/* Nothing that arrived is left open, even before the message is dropped. */
		CHECK(open_fds() == base);

		/* The next message on the same socket is fine. */
		const int ok[] = {w.get()};
		REQUIRE(send_message(a.get(), "next", std::span<const int>(ok, max_fds ? 1 : 0)));
		auto next = recv_message(b.get(), kProtocolMaxMessage, max_fds);
		REQUIRE(next);
		CHECK(next->error == 0);
		CHECK(next->data == "next");
		CHECK(next->fds.size() == (max_fds ? 1u : 0u));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("kernel truncation of the control data (MSG_CTRUNC) closes everything", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		/*
		 * The receive buffer has room for only a few descriptors, so the kernel installs
		 * what fits, drops the rest and sets MSG_CTRUNC. Confirm that with raw recvmsg first.
		 */
		{
			std::vector<int> raw(kKernelMaxFds, w.get());
			REQUIRE(send_message(a.get(), "probe", raw));
			char data[16];
			iovec iov{data, sizeof(data)};
			alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 2)];
			msghdr msg{};
			msg.msg_iov = &iov;
			msg.msg_iovlen = 1;
			msg.msg_control = control;
			msg.msg_controllen = sizeof(control);
			REQUIRE(recvmsg(b.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) == 5);
			CHECK((msg.msg_flags & MSG_CTRUNC) != 0);
			for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
				REQUIRE(c->cmsg_type == SCM_RIGHTS);
				const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (std::size_t i = 0; i < n; ++i) {
					int fd;
					std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
					close(fd);
				}
			}
		}
		const std::size_t base = open_fds();
		for (std::size_t max_fds : {std::size_t{0}, std::size_t{1}, kProtocolMaxFds}) {
			INFO("max_fds " << max_fds);
			std::vector<int> raw(kKernelMaxFds, w.get());
			REQUIRE(send_message(a.get(), "truncated", raw));
			auto m = recv_message(b.get(), kProtocolMaxMessage, max_fds);
			REQUIRE(m);
			CHECK(m->error == ETOOMANYREFS);
			CHECK(m->fds.empty());
			CHECK(open_fds() == base);
		}
		REQUIRE(send_message(a.get(), "still fine"));
		auto next = recv_message(b.get());
		REQUIRE(next);
		CHECK(next->error == 0);
		CHECK(next->data == "still fine");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("kKernelMaxFds fds go through; one more is E2BIG and nothing is sent", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		auto [r, w] = make_pipe();
		std::vector<UniqueFd> dups;
		std::vector<int> raw;
		for (std::size_t i = 0; i < kKernelMaxFds + 1; ++i) {
			dups.push_back(w.dup());
			REQUIRE(dups.back().is_valid());
			raw.push_back(dups.back().get());
		}
		const std::size_t base = open_fds();

		auto big = send_message(a.get(), "too many for the kernel", raw);
		REQUIRE_FALSE(big);
		CHECK(big.error() == E2BIG);
		CHECK_FALSE(readable(b.get()));
		for (int fd : raw)
			CHECK(is_open(fd));
		CHECK(open_fds() == base);

		raw.pop_back();
		REQUIRE(send_message(a.get(), "the most", raw));
		auto m = recv_message(b.get(), kProtocolMaxMessage, kKernelMaxFds);
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data == "the most");
		REQUIRE(m->fds.size() == kKernelMaxFds);
		CHECK(open_fds() == base + kKernelMaxFds);
		for (std::size_t i = 0; i < m->fds.size(); ++i) {
			CHECK(is_cloexec(m->fds[i].get()));
			CHECK(kernel_same_file(m->fds[i].get(), raw[i]));
		}
		pipe_write(m->fds.back().get(), "253");
		CHECK(pipe_read(r.get()) == "253");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("a datagram longer than max_size: EMSGSIZE with its prefix; socket still usable", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		std::string data;
		for (int i = 0; i < 100; ++i)
			data += static_cast<char>('a' + i % 26);
		REQUIRE(send_message(a.get(), data));
		auto m = recv_message(b.get(), 10);
		REQUIRE(m);
		CHECK(m->error == EMSGSIZE);
		CHECK(m->data == data.substr(0, 10));
		CHECK(m->fds.empty());

		/* One byte over the default limit. */
		std::string over(kProtocolMaxMessage + 1, 'o');
		over[kProtocolMaxMessage - 1] = 'L';
		REQUIRE(send_message(a.get(), over));
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == EMSGSIZE);
		CHECK(m->data.size() == kProtocolMaxMessage);
		CHECK(m->data == over.substr(0, kProtocolMaxMessage));

		/* Exactly max_size is not too long. */
		REQUIRE(send_message(a.get(), data.substr(0, 10)));
		m = recv_message(b.get(), 10);
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data == data.substr(0, 10));

		REQUIRE(send_message(a.get(), "next"));
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->data == "next");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("a long datagram with fds: EMSGSIZE and no descriptor leaks", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		const int fds[] = {w.get(), w.get()};
		REQUIRE(send_message(a.get(), std::string(500, 'x'), fds));
		const std::size_t base = open_fds();
		auto m = recv_message(b.get(), 100);
		REQUIRE(m);
		CHECK(m->error == EMSGSIZE);
		CHECK(m->data == std::string(100, 'x'));
		/* Whether the fds are handed over or closed is the implementation's choice; either
		 * way every one that arrived is accounted for. */
		CHECK(open_fds() == base + m->fds.size());
		for (const UniqueFd &fd : m->fds)
			CHECK(is_cloexec(fd.get()));
		m->fds.clear();
		CHECK(open_fds() == base);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("max_size 0: a non-empty datagram is EMSGSIZE; not the end of the stream", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		REQUIRE(send_message(a.get(), "hello"));
		auto m = recv_message(b.get(), 0);
		if (!m)
			FAIL("recv_message failed with " << m.error() << " (" << std::strerror(m.error()) << ")");
		CHECK(m->error == EMSGSIZE);
		CHECK(m->data.empty());
	}
	CHECK(open_fds() == before);
}

TEST_CASE("nothing queued: EAGAIN at once; even on a blocking socket", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		set_timeouts(b.get());
		REQUIRE((fcntl(b.get(), F_GETFL) & O_NONBLOCK) == 0);
		const auto start = std::chrono::steady_clock::now();
		auto m = recv_message(b.get());
		const auto elapsed = std::chrono::steady_clock::now() - start;
		REQUIRE_FALSE(m);
		CHECK(m.error() == EAGAIN);
		CHECK(elapsed < std::chrono::milliseconds(500));
		/* The socket's own mode is untouched. */
		CHECK((fcntl(b.get(), F_GETFL) & O_NONBLOCK) == 0);
		/* And it still works afterwards. */
		REQUIRE(send_message(a.get(), "late"));
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "late");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("SOCK_SEQPACKET: queued messages first; then EPIPE once the peer has closed", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		auto [r, w] = make_pipe();
		const int fds[] = {w.get()};
		REQUIRE(send_message(a.get(), "one"));
		REQUIRE(send_message(a.get(), "two", fds));
		a.reset();
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "one");
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "two");
		CHECK(m->fds.size() == 1);
		auto end = recv_message(b.get());
		REQUIRE_FALSE(end);
		CHECK(end.error() == EPIPE);
		/* And again: the end is sticky. */
		end = recv_message(b.get());
		REQUIRE_FALSE(end);
		CHECK(end.error() == EPIPE);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("SOCK_SEQPACKET: shutdown(SHUT_WR) by the peer is EPIPE too", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		REQUIRE(send_message(a.get(), "bye"));
		REQUIRE(shutdown(a.get(), SHUT_WR) == 0);
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "bye");
		auto end = recv_message(b.get());
		REQUIRE_FALSE(end);
		CHECK(end.error() == EPIPE);
		/* The other direction still works. */
		REQUIRE(send_message(b.get(), "still here"));
		m = recv_message(a.get());
		REQUIRE(m);
		CHECK(m->data == "still here");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("sending to a closed peer fails without raising SIGPIPE", "[message]")
{
	SigpipeCounter sigpipes;
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(SOCK_SEQPACKET);
		auto [r, w] = make_pipe();
		b.reset();
		auto s = send_message(a.get(), "anyone?");
		REQUIRE_FALSE(s);
		CHECK(s.error() == EPIPE);
		const int fds[] = {w.get()};
		s = send_message(a.get(), "with fd", fds);
		REQUIRE_FALSE(s);
		CHECK(s.error() == EPIPE);
		CHECK(is_open(w.get()));
	}
	{
		/* A datagram socket has no stream to break: the socket's own errno comes back. */
		auto [a, b] = socket_pair(SOCK_DGRAM);
		b.reset();
		auto s = send_message(a.get(), "anyone?");
		REQUIRE_FALSE(s);
		CHECK(s.error() == ECONNREFUSED);
	}
	CHECK(g_sigpipes == 0);
	CHECK(open_fds() == before);
}

TEST_CASE("a full socket: EAGAIN at once; and sending resumes once the peer reads", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		set_timeouts(a.get());
		const std::string chunk(4096, 'f');
		const int fds[] = {w.get()};
		std::size_t sent = 0;
		int err = 0;
		const auto start = std::chrono::steady_clock::now();
		for (int i = 0; i < 100000; ++i) {
			auto s = send_message(a.get(), chunk, i % 10 == 0 ? std::span<const int>(fds)
									 : std::span<const int>());
			if (!s) {
				err = s.error();
				break;
			}
			++sent;
		}
		CHECK(err == EAGAIN);
		CHECK(sent > 0);
		CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1500));
		const std::size_t base = open_fds();

		/* Still full: a failed send queued nothing. */
		auto again = send_message(a.get(), "x", fds);
		REQUIRE_FALSE(again);
		CHECK(again.error() == EAGAIN);

		/* Drain everything; one more fits again. */
		std::size_t got = 0;
		for (;;) {
			auto m = recv_message(b.get());
			if (!m) {
				CHECK(m.error() == EAGAIN);
				break;
			}
			CHECK(m->error == 0);
			CHECK(m->data.size() == chunk.size());
			CHECK(m->fds.size() == (got % 10 == 0 ? 1u : 0u));
			++got;
		}
		CHECK(got == sent);
		CHECK(open_fds() == base);
		REQUIRE(send_message(a.get(), "room again", fds));
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "room again");
	}
	CHECK(open_fds() == before);
}

TEST_CASE("a datagram larger than the socket allows is EMSGSIZE and nothing is sent", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		const int fds[] = {w.get()};
		const std::string huge(4 * 1024 * 1024, 'h');
		auto s = send_message(a.get(), huge, fds);
		REQUIRE_FALSE(s);
		CHECK(s.error() == EMSGSIZE);
		CHECK(is_open(w.get()));
		CHECK_FALSE(readable(b.get()));
		REQUIRE(send_message(a.get(), "small"));
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->data == "small");
	}
	CHECK(open_fds() == before);
}

/*
 * SO_PASSCRED on the receiver makes the kernel attach SCM_CREDENTIALS to every datagram.
 * libfdpass does not read credentials from messages (peer_credentials() is the way): it treats
 * them as foreign control data. A bytes-only datagram therefore arrives with EBADMSG, and one
 * with fds with ETOOMANYREFS, because the credentials take the control buffer's room and the
 * kernel truncates (MSG_CTRUNC) the SCM_RIGHTS part. Either way nothing leaks and the socket
 * stays usable; with SO_PASSCRED off again messages are normal.
 */
TEST_CASE("SO_PASSCRED on the receiver: credentials are foreign control data", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		auto [r, w] = make_pipe();
		int on = 1;
		REQUIRE(setsockopt(b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
		const std::size_t base = open_fds();

		REQUIRE(send_message(a.get(), "creds only"));
		auto m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == EBADMSG);
		CHECK(m->data == "creds only");
		CHECK(m->fds.empty());

		const int fds[] = {w.get()};
		REQUIRE(send_message(a.get(), "creds and an fd", fds));
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK((m->error == ETOOMANYREFS || m->error == EBADMSG));
		CHECK(m->fds.empty());
		CHECK(open_fds() == base);

		/* A receiver with room for many fds: the fd fits beside the credentials, and is closed. */
		REQUIRE(send_message(a.get(), "roomy", fds));
		m = recv_message(b.get(), kProtocolMaxMessage, 64);
		REQUIRE(m);
		CHECK(m->error == EBADMSG);
		CHECK(m->fds.empty());
		CHECK(open_fds() == base);

		int off = 0;
		REQUIRE(setsockopt(b.get(), SOL_SOCKET, SO_PASSCRED, &off, sizeof(off)) == 0);
		REQUIRE(send_message(a.get(), "plain", fds));
		m = recv_message(b.get());
		REQUIRE(m);
		CHECK(m->error == 0);
		CHECK(m->fds.size() == 1);
	}
	CHECK(open_fds() == before);
}

/*
 * SO_PASSPIDFD (Linux 6.5+) makes the kernel install a pidfd for the sender into the receiver's
 * table with every datagram (SCM_PIDFD). That is control data other than SCM_RIGHTS, and a
 * descriptor: EBADMSG, and it must be closed like any other that arrived.
 */
TEST_CASE("SO_PASSPIDFD on the receiver: the SCM_PIDFD descriptor is closed too", "[message]")
{
	const int type = GENERATE(SOCK_SEQPACKET, SOCK_DGRAM);
	INFO(type_name(type));
	const std::size_t before = open_fds();
	{
		auto [a, b] = socket_pair(type);
		int on = 1;
		if (setsockopt(b.get(), SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on)) != 0) {
			WARN("SO_PASSPIDFD unsupported here: " << std::strerror(errno));
			return;
		}
		const std::size_t base = open_fds();
		REQUIRE(send_message(a.get(), "with a pidfd"));
		{
			auto m = recv_message(b.get());
			REQUIRE(m);
			CHECK(m->error == EBADMSG);
			CHECK(m->data == "with a pidfd");
			CHECK(m->fds.empty());
			CHECK(open_fds() == base);
		}
		CHECK(open_fds() == base);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("not a socket; or not a descriptor at all", "[message]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		auto s = send_message(w.get(), "pipe");
		REQUIRE_FALSE(s);
		CHECK(s.error() == ENOTSOCK);
		auto m = recv_message(r.get());
		REQUIRE_FALSE(m);
		CHECK(m.error() == ENOTSOCK);

		UniqueFd closed = w.dup();
		const int stale = closed.get();
		closed.reset();
		s = send_message(stale, "gone");
		REQUIRE_FALSE(s);
		CHECK(s.error() == EBADF);
		m = recv_message(stale);
		REQUIRE_FALSE(m);
		CHECK(m.error() == EBADF);
		m = recv_message(-1);
		REQUIRE_FALSE(m);
		CHECK(m.error() == EBADF);
	}
	CHECK(open_fds() == before);
}
