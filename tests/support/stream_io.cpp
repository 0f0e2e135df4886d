// Blocking stream helpers for tests (see stream_io.h).
#include "stream_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace shoal::test {

bool write_all(int fd, const std::string &data)
{
	std::size_t off = 0;
	while (off < data.size()) {
		pollfd p{fd, POLLOUT, 0};
		if (::poll(&p, 1, 10000) <= 0)
			return false;
		ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN)
			return false;
		if (n > 0)
			off += static_cast<std::size_t>(n);
	}
	return true;
}

std::string read_n(int fd, std::size_t n)
{
	std::string out;
	while (out.size() < n) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 10000) <= 0)
			break;
		char buf[65536];
		ssize_t r = ::read(fd, buf, std::min(sizeof(buf), n - out.size()));
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r <= 0)
			break;
		out.append(buf, static_cast<std::size_t>(r));
	}
	return out;
}

std::string read_to_eof(int fd)
{
	std::string out;
	for (;;) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 10000) <= 0)
			break;
		char buf[65536];
		ssize_t r = ::read(fd, buf, sizeof(buf)); /* read(): pipes too */
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r <= 0)
			break;
		out.append(buf, static_cast<std::size_t>(r));
	}
	return out;
}

} // namespace shoal::test
