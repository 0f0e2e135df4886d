// bench_server: the upstream every relay forwards to; per connection an echo ('E') or a counted sink ('S').
//
// Protocol, chosen by the connection's first byte:
//   'E'  every later byte is echoed back (ping-pong latency).
//   'S'  repeated rounds of: 8-byte little-endian length N, N bytes (discarded), then one ack byte
//        'A' from us. The sender times a round until the ack, so no half-close has to cross the
//        relay. N = 0 is a pure round trip (idle connections prove they are relayed end to end).
// Single thread, epoll. Connections are closed with an RST once the peer closes, so that no
// TIME_WAIT piles up on loopback across thousands of benchmark connections.
#include <sys/epoll.h>

#include <memory>
#include <string>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_server --listen 127.0.0.1:PORT [--buffer BYTES]\n"
	"Echo ('E') or counted sink ('S') per connection, for scripts/bench-splicer.\n"
	"Prints \"ready\" on stdout once listening.\n";

struct Conn {
	int fd = -1;
	char mode = 0;        /* 0 until the first byte */
	unsigned char hdr[8]; /* sink: the length of the current round */
	unsigned hdr_len = 0;
	std::uint64_t remaining = 0;
	unsigned acks_owed = 0;
	std::string echo_out; /* echo: bytes read but not yet written back */
	bool want_out = false;
};

int ep = -1;
std::vector<char> buf;

void update(Conn *c)
{
	bool want_out = c->acks_owed > 0 || !c->echo_out.empty();
	if (want_out == c->want_out)
		return;
	c->want_out = want_out;
	epoll_event ev{};
	/* While output is stuck, stop reading so the peer is pushed back rather than our memory growing. */
	ev.events = want_out ? EPOLLOUT : EPOLLIN;
	ev.data.ptr = c;
	::epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void drop(Conn *c)
{
	bench::close_abort(c->fd);
	delete c;
}

/* Writes what is owed; false if the connection failed. */
bool flush(Conn *c)
{
	while (!c->echo_out.empty()) {
		ssize_t n = ::write(c->fd, c->echo_out.data(), c->echo_out.size());
		if (n < 0)
			return errno == EAGAIN;
		c->echo_out.erase(0, static_cast<std::size_t>(n));
	}
	while (c->acks_owed > 0) {
		char acks[64];
		unsigned k = c->acks_owed < sizeof acks ? c->acks_owed : sizeof acks;
		std::memset(acks, 'A', k);
		ssize_t n = ::write(c->fd, acks, k);
		if (n < 0)
			return errno == EAGAIN;
		c->acks_owed -= static_cast<unsigned>(n);
	}
	return true;
}

/* Feeds bytes to the sink state machine. */
void sink(Conn *c, const char *p, std::size_t n)
{
	while (n > 0) {
		if (c->hdr_len < 8) {
			std::size_t k = std::min<std::size_t>(8 - c->hdr_len, n);
			std::memcpy(c->hdr + c->hdr_len, p, k);
			c->hdr_len += static_cast<unsigned>(k);
			p += k;
			n -= k;
			if (c->hdr_len < 8)
				return;
			c->remaining = 0;
			for (int i = 7; i >= 0; i--)
				c->remaining = (c->remaining << 8) | c->hdr[i];
		}
		std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(c->remaining, n));
		c->remaining -= k;
		p += k;
		n -= k;
		if (c->remaining == 0) {
			c->acks_owed++;
			c->hdr_len = 0;
		}
	}
}

void on_readable(Conn *c)
{
	/* A few reads per wake-up keeps fifty streams fair to each other. */
	for (int i = 0; i < 16; i++) {
		ssize_t n = ::read(c->fd, buf.data(), buf.size());
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			drop(c);
			return;
		}
		if (n < 0)
			break;
		const char *p = buf.data();
		std::size_t len = static_cast<std::size_t>(n);
		if (c->mode == 0) {
			c->mode = *p++;
			len--;
			if (c->mode != 'E' && c->mode != 'S') {
				drop(c);
				return;
			}
		}
		if (c->mode == 'E')
			c->echo_out.append(p, len);
		else
			sink(c, p, len);
		if (c->acks_owed || !c->echo_out.empty())
			break;
		if (static_cast<std::size_t>(n) < buf.size())
			break;
	}
	if (!flush(c)) {
		drop(c);
		return;
	}
	update(c);
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in addr = bench::parse_endpoint(args.str("listen"));
	buf.resize(args.num("buffer", 128 * 1024));
	bench::raise_nofile();

	ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench::die("epoll_create1: %s", std::strerror(errno));
	int lfd = bench::tcp_listen(addr);
	epoll_event lev{};
	lev.events = EPOLLIN;
	lev.data.ptr = nullptr;
	::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
	std::printf("ready\n");
	std::fflush(stdout);

	epoll_event events[256];
	for (;;) {
		int n = ::epoll_wait(ep, events, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			bench::die("epoll_wait: %s", std::strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			auto *c = static_cast<Conn *>(events[i].data.ptr);
			if (!c) {
				for (int k = 0; k < 64; k++) {
					int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0) {
						if (errno == EMFILE || errno == ENFILE)
							bench::die("accept: %s", std::strerror(errno));
						break;
					}
					bench::set_nodelay(fd);
					auto *nc = new Conn;
					nc->fd = fd;
					epoll_event ev{};
					ev.events = EPOLLIN;
					ev.data.ptr = nc;
					::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (c->want_out) {
				if (!flush(c)) {
					drop(c);
					continue;
				}
				update(c);
				continue;
			}
			on_readable(c);
		}
	}
}
