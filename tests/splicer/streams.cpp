// run_streams: a poll(2) loop that writes and verifies deterministic byte streams.
#include "streams.h"

#include <cerrno>
#include <map>
#include <poll.h>
#include <sys/socket.h>

#include "relay_world.h"

namespace shoal::test {

StreamResult run_streams(std::vector<Stream> &streams, std::chrono::milliseconds timeout, bool half_close,
			 const std::function<void()> &on_tick)
{
	using Clock = std::chrono::steady_clock;
	auto deadline = Clock::now() + timeout;
	auto next_tick = Clock::now();
	constexpr std::size_t kChunk = 32768;

	for (;;) {
		std::vector<pollfd> fds;
		std::map<int, std::size_t> index; /* fd → slot in fds */
		auto want = [&](int fd, short ev) {
			auto [it, fresh] = index.emplace(fd, fds.size());
			if (fresh)
				fds.push_back({fd, ev, 0});
			else
				fds[it->second].events |= ev;
		};
		bool busy = false;
		for (Stream &s : streams) {
			if (s.error || s.corrupt)
				continue;
			if (s.sent < std::min(s.total, s.cap))
				want(s.from, POLLOUT);
			if (s.received < s.total)
				want(s.to, POLLIN);
			busy = busy || s.received < s.total;
		}
		if (!busy)
			break;
		if (Clock::now() > deadline)
			break;
		if (on_tick && Clock::now() >= next_tick) {
			on_tick();
			next_tick = Clock::now() + std::chrono::milliseconds(10);
		}
		int r = ::poll(fds.data(), fds.size(), 10);
		if (r <= 0)
			continue;
		for (Stream &s : streams) {
			if (s.error || s.corrupt)
				continue;
			short from_ev = index.count(s.from) ? fds[index[s.from]].revents : 0;
			short to_ev = index.count(s.to) ? fds[index[s.to]].revents : 0;
			if ((from_ev & (POLLOUT | POLLERR)) && s.sent < std::min(s.total, s.cap)) {
				std::size_t n = std::min(kChunk, std::min(s.total, s.cap) - s.sent);
				std::string chunk = pattern(s.seed, s.sent, n);
				ssize_t w = ::send(s.from, chunk.data(), n, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (w > 0)
					s.sent += static_cast<std::size_t>(w);
				else if (w < 0 && errno != EAGAIN)
					s.error = errno;
				if (s.sent == s.total && half_close && !s.shut) {
					::shutdown(s.from, SHUT_WR);
					s.shut = true;
				}
			}
			if ((to_ev & (POLLIN | POLLERR | POLLHUP)) && s.received < s.total) {
				char buf[kChunk];
				ssize_t n = ::recv(s.to, buf, std::min(sizeof(buf), s.total - s.received), MSG_DONTWAIT);
				if (n > 0) {
					if (std::string(buf, static_cast<std::size_t>(n)) !=
					    pattern(s.seed, s.received, static_cast<std::size_t>(n)))
						s.corrupt = true;
					s.received += static_cast<std::size_t>(n);
				} else if (n == 0) {
					s.error = EPIPE; /* EOF before the last byte */
				} else if (errno != EAGAIN) {
					s.error = errno;
				}
			}
		}
	}
	StreamResult res;
	for (const Stream &s : streams) {
		res.complete += s.received == s.total && !s.corrupt && !s.error;
		res.corrupt += s.corrupt;
		res.errors += s.error != 0;
		res.bytes += s.received;
	}
	return res;
}

} // namespace shoal::test
