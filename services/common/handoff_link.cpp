// HandoffLink: blocking-with-deadline record exchange used only during a live upgrade.
#include "handoff_link.h"

#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

namespace shoal::service {

namespace {

Result<void> wait_for(int fd, short events, HandoffLink::Clock::time_point deadline)
{
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			deadline - HandoffLink::Clock::now());
		if (left.count() <= 0)
			return errno_error(ETIMEDOUT);
		pollfd p{fd, events, 0};
		int r = ::poll(&p, 1, static_cast<int>(left.count()));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno_error(errno);
		if (r > 0)
			return {};
	}
}

void size_buffers(int fd)
{
	int size = 4 * 1024 * 1024;
	/* FORCE works with CAP_NET_ADMIN; otherwise the plain option caps at net.core.*mem_max. */
	if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

} // namespace

HandoffLink::HandoffLink(UniqueFd sock) : sock_(std::move(sock))
{
	int flags = ::fcntl(sock_.get(), F_GETFL);
	if (flags >= 0)
		::fcntl(sock_.get(), F_SETFL, flags | O_NONBLOCK);
	size_buffers(sock_.get());
}

Result<void> HandoffLink::send(const nlohmann::json &record, std::span<const int> fds,
			       Clock::time_point deadline)
{
	std::string data = record.dump();
	if (data.size() > kHandoffMaxMessage)
		return errno_error(EMSGSIZE);
	for (;;) {
		auto r = send_message(sock_.get(), data, fds);
		if (r || r.error() != EAGAIN)
			return r;
		if (auto w = wait_for(sock_.get(), POLLOUT, deadline); !w)
			return w;
	}
}

Result<HandoffRecord> HandoffLink::recv(Clock::time_point deadline)
{
	for (;;) {
		auto r = recv_message(sock_.get(), kHandoffMaxMessage, kKernelMaxFds);
		if (!r) {
			if (r.error() != EAGAIN)
				return errno_error(r.error());
			if (auto w = wait_for(sock_.get(), POLLIN, deadline); !w)
				return errno_error(w.error());
			continue;
		}
		if (r->error)
			return errno_error(EBADMSG);
		HandoffRecord rec;
		rec.json = nlohmann::json::parse(r->data, nullptr, false);
		if (!rec.json.is_object())
			return errno_error(EBADMSG);
		rec.fds = std::move(r->fds);
		return rec;
	}
}

Result<std::pair<UniqueFd, UniqueFd>> handoff_socketpair()
{
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return errno_error(errno);
	return std::make_pair(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

} // namespace shoal::service
