// bench_stream: throughput through a relay — K streams send N bytes in all to bench_server's sink, timed to the last ack.
//
// Like iperf3, the sender write()s from a userspace buffer and the sink read()s into one, so the
// endpoints cost what ordinary applications cost and "direct" is a fair baseline. Each stream sends
// 'S', its length and its bytes, then waits for the sink's ack byte: no half-close has to cross the
// relay, and the byte count is exact (for CPU seconds per GiB). Prints one JSON line.
#include <sys/epoll.h>

#include <algorithm>
#include <vector>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_stream --connect 127.0.0.1:PORT --bytes N [--streams K] [--timeout SECONDS]\n"
	"Sends N bytes in all over K streams (default 1) to bench_server's sink; prints JSON.\n";

struct Stream {
	int fd = -1;
	bool connected = false;
	std::uint64_t to_send = 0; /* header + payload still to write */
	std::uint64_t payload = 0;
	unsigned char header[9];
	unsigned header_sent = 0;
	bool done = false;
};

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in addr = bench::parse_endpoint(args.str("connect"));
	std::uint64_t total = args.num("bytes", 0);
	unsigned k = static_cast<unsigned>(args.num("streams", 1));
	double timeout = static_cast<double>(args.num("timeout", 120));
	if (total == 0 || k == 0)
		bench::die("--bytes and --streams must be positive");
	bench::raise_nofile();

	std::vector<char> buf(128 * 1024, 'x');
	int ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench::die("epoll_create1: %s", std::strerror(errno));

	std::vector<Stream> streams(k);
	auto start = bench::Clock::now();
	auto deadline = start + std::chrono::duration_cast<bench::Clock::duration>(std::chrono::duration<double>(timeout));
	for (unsigned i = 0; i < k; i++) {
		Stream &s = streams[i];
		s.payload = total / k + (i < total % k ? 1 : 0);
		s.header[0] = 'S';
		for (int b = 0; b < 8; b++)
			s.header[1 + b] = static_cast<unsigned char>(s.payload >> (8 * b));
		s.to_send = s.payload;
		s.fd = bench::tcp_connect_nb(addr);
		if (s.fd < 0)
			bench::die("connect: %s", std::strerror(errno));
		epoll_event ev{};
		ev.events = EPOLLOUT;
		ev.data.u32 = i;
		::epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
	}

	unsigned finished = 0;
	epoll_event events[256];
	while (finished < k) {
		int n = ::epoll_wait(ep, events, 256, bench::ms_until(deadline));
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		if (n == 0 && bench::Clock::now() >= deadline)
			bench::die("timed out after %.0f s with %u of %u streams finished", timeout, finished, k);
		for (int i = 0; i < n; i++) {
			Stream &s = streams[events[i].data.u32];
			if (s.done)
				continue;
			if (!s.connected) {
				if (int err = bench::socket_error(s.fd))
					bench::die("connect: %s", std::strerror(err));
				s.connected = true;
			}
			if (s.header_sent < sizeof s.header || s.to_send > 0) {
				/* A few writes per wake-up keeps the streams fair to each other. */
				for (int w = 0; w < 8; w++) {
					ssize_t r;
					if (s.header_sent < sizeof s.header)
						r = ::write(s.fd, s.header + s.header_sent, sizeof s.header - s.header_sent);
					else
						r = ::write(s.fd, buf.data(), std::min<std::uint64_t>(s.to_send, buf.size()));
					if (r < 0) {
						if (errno == EAGAIN)
							break;
						bench::die("write: %s", std::strerror(errno));
					}
					if (s.header_sent < sizeof s.header)
						s.header_sent += static_cast<unsigned>(r);
					else
						s.to_send -= static_cast<std::uint64_t>(r);
					if (s.header_sent == sizeof s.header && s.to_send == 0) {
						epoll_event ev{};
						ev.events = EPOLLIN;
						ev.data.u32 = events[i].data.u32;
						::epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
						break;
					}
				}
				continue;
			}
			char ack;
			ssize_t r = ::read(s.fd, &ack, 1);
			if (r == 1 && ack == 'A') {
				s.done = true;
				finished++;
				::epoll_ctl(ep, EPOLL_CTL_DEL, s.fd, nullptr);
			} else if (r == 0 || (r < 0 && errno != EAGAIN)) {
				bench::die("stream closed before its ack: %s", r == 0 ? "EOF" : std::strerror(errno));
			}
		}
	}
	double secs = bench::seconds_since(start);
	for (Stream &s : streams)
		bench::close_abort(s.fd);
	std::printf("{\"streams\":%u,\"bytes\":%llu,\"seconds\":%.6f,\"gbit_per_s\":%.4f}\n", k,
		    static_cast<unsigned long long>(total), secs, static_cast<double>(total) * 8 / secs / 1e9);
	return 0;
}
