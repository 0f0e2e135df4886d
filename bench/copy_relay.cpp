// bench_copy_relay: the plain read()/write() TCP relay (1 MiB buffer, one epoll thread) that splicer is measured against.
//
// What a competent user writes without splice(2): per direction, read up to 1 MiB, write it on,
// and when the far side pushes back keep the rest and stop reading until it has drained.
// Buffers come from a small pool and go back to it whenever a direction is empty, so an idle
// relay holds none (a fair comparison for memory per idle relay). Half-closes are passed on with
// shutdown(SHUT_WR); a socket error ends both sides with an RST.
#include <sys/epoll.h>

#include <csignal>
#include <memory>
#include <vector>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_copy_relay --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--buffer BYTES]\n"
	"Relays each accepted connection to a new upstream connection with read()/write().\n"
	"Prints \"ready\" on stdout once listening.\n";

std::size_t buffer_size = 1 << 20;
std::vector<std::unique_ptr<char[]>> pool;

std::unique_ptr<char[]> take_buffer()
{
	if (pool.empty())
		return std::unique_ptr<char[]>(new char[buffer_size]);
	auto b = std::move(pool.back());
	pool.pop_back();
	return b;
}

void give_buffer(std::unique_ptr<char[]> b)
{
	/* A few spares are enough to avoid mmap/munmap per burst without hoarding memory. */
	if (b && pool.size() < 64)
		pool.push_back(std::move(b));
}

struct Pair;

struct Side {
	Pair *pair;
	int idx;
	int fd = -1;
	std::uint32_t mask = 0;
};

/* Bytes moving from side i to side 1-i. */
struct Dir {
	std::unique_ptr<char[]> buf;
	std::size_t off = 0, len = 0; /* pending: buf[off, len) not yet written */
	bool eof = false;             /* side i sent FIN */
	bool shut = false;            /* passed on as shutdown(SHUT_WR) of side 1-i */
};

struct Pair {
	Side side[2];
	Dir dir[2];
	bool connecting = true; /* side 1 (upstream) is still connecting */
	bool closed = false;
};

int ep = -1;
std::vector<Pair *> graveyard; /* freed after the current batch of events, which may still name them */

void close_pair(Pair *p, bool abort)
{
	if (p->closed)
		return;
	p->closed = true;
	for (Side &s : p->side) {
		::epoll_ctl(ep, EPOLL_CTL_DEL, s.fd, nullptr);
		if (abort)
			bench::close_abort(s.fd);
		else
			::close(s.fd);
	}
	for (Dir &d : p->dir)
		give_buffer(std::move(d.buf));
	graveyard.push_back(p);
}

void update(Pair *p)
{
	for (int i = 0; i < 2; i++) {
		Side &s = p->side[i];
		std::uint32_t m = 0;
		if (p->connecting) {
			m = i == 1 ? std::uint32_t{EPOLLOUT} : 0u;
		} else {
			if (p->dir[i].len == 0 && !p->dir[i].eof)
				m |= EPOLLIN;
			if (p->dir[1 - i].len > 0)
				m |= EPOLLOUT;
		}
		if (m != s.mask) {
			s.mask = m;
			epoll_event ev{};
			ev.events = m;
			ev.data.ptr = &s;
			::epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
		}
	}
}

/* Passes a finished direction's EOF on; false if the pair failed. */
bool maybe_shut(Pair *p, int i)
{
	Dir &d = p->dir[i];
	if (d.eof && d.len == 0 && !d.shut) {
		d.shut = true;
		if (::shutdown(p->side[1 - i].fd, SHUT_WR) < 0 && errno != ENOTCONN)
			return false;
	}
	return true;
}

/* Writes direction i's pending bytes; false if the pair failed. */
bool flush(Pair *p, int i)
{
	Dir &d = p->dir[i];
	while (d.off < d.len) {
		ssize_t w = ::write(p->side[1 - i].fd, d.buf.get() + d.off, d.len - d.off);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR;
		d.off += static_cast<std::size_t>(w);
	}
	d.off = d.len = 0;
	give_buffer(std::move(d.buf));
	return maybe_shut(p, i);
}

/* Reads from side i and writes to side 1-i until one of them would block; false if the pair failed. */
bool pump(Pair *p, int i)
{
	Dir &d = p->dir[i];
	/* Bounded work per wake-up so one busy relay cannot starve the others. */
	for (int round = 0; round < 16 && d.len == 0 && !d.eof; round++) {
		if (!d.buf)
			d.buf = take_buffer();
		ssize_t n = ::read(p->side[i].fd, d.buf.get(), buffer_size);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return false;
		}
		if (n == 0) {
			d.eof = true;
			break;
		}
		d.len = static_cast<std::size_t>(n);
		d.off = 0;
		if (!flush(p, i))
			return false;
	}
	if (d.len == 0)
		give_buffer(std::move(d.buf));
	return maybe_shut(p, i);
}

void on_event(Side *s, std::uint32_t events)
{
	Pair *p = s->pair;
	if (p->closed)
		return;
	int i = s->idx;
	if (p->connecting) {
		/* Only the upstream side is polled while connecting; anything on the client side is its hang-up. */
		if (i == 0 || bench::socket_error(s->fd) != 0) {
			close_pair(p, true);
			return;
		}
		p->connecting = false;
		update(p);
		return;
	}
	bool err = events & (EPOLLERR | EPOLLHUP);
	if ((err || (events & EPOLLOUT)) && p->dir[1 - i].len > 0 && !flush(p, 1 - i)) {
		close_pair(p, true);
		return;
	}
	if ((err || (events & EPOLLIN)) && (s->mask & EPOLLIN) && !pump(p, i)) {
		close_pair(p, true);
		return;
	}
	if (p->dir[0].shut && p->dir[1].shut) {
		close_pair(p, false);
		return;
	}
	update(p);
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in listen_addr = bench::parse_endpoint(args.str("listen"));
	sockaddr_in upstream = bench::parse_endpoint(args.str("upstream"));
	buffer_size = args.num("buffer", 1 << 20);
	bench::raise_nofile();
	::signal(SIGPIPE, SIG_IGN);

	ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench::die("epoll_create1: %s", std::strerror(errno));
	int lfd = bench::tcp_listen(listen_addr);
	epoll_event lev{};
	lev.events = EPOLLIN;
	lev.data.ptr = nullptr;
	::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
	std::printf("ready\n");
	std::fflush(stdout);

	/* Out of descriptors: stop accepting for a moment instead of spinning on the listener. */
	bool accept_paused = false;
	bench::Clock::time_point resume_at{};

	epoll_event events[512];
	for (;;) {
		int n = ::epoll_wait(ep, events, 512, accept_paused ? bench::ms_until(resume_at) : -1);
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		if (accept_paused && bench::Clock::now() >= resume_at) {
			accept_paused = false;
			lev.events = EPOLLIN;
			::epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &lev);
		}
		for (int k = 0; k < n; k++) {
			auto *s = static_cast<Side *>(events[k].data.ptr);
			if (s) {
				on_event(s, events[k].events);
				continue;
			}
			for (int a = 0; a < 64; a++) {
				int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (cfd < 0) {
					if (errno == EMFILE || errno == ENFILE) {
						std::fprintf(stderr, "bench_copy_relay: accept: %s\n", std::strerror(errno));
						accept_paused = true;
						resume_at = bench::Clock::now() + std::chrono::milliseconds(100);
						lev.events = 0;
						::epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &lev);
					}
					break;
				}
				bench::set_nodelay(cfd);
				int ufd = bench::tcp_connect_nb(upstream);
				if (ufd < 0) {
					bench::close_abort(cfd);
					continue;
				}
				auto *p = new Pair;
				p->side[0] = Side{p, 0, cfd, 0};
				p->side[1] = Side{p, 1, ufd, EPOLLOUT};
				epoll_event ev{};
				ev.events = 0;
				ev.data.ptr = &p->side[0];
				::epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
				ev.events = EPOLLOUT;
				ev.data.ptr = &p->side[1];
				::epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
			}
		}
		for (Pair *p : graveyard)
			delete p;
		graveyard.clear();
	}
}
