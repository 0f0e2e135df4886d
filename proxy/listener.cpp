// Listener: accept4 loop on a uv_poll'd TCP socket, with a pause instead of a spin when out of fds.
#include "listener.h"

#include <cerrno>
#include <netinet/in.h>
#include <sys/socket.h>

#include <shoal/proto/address.h>
#include <shoal/service/log.h>

#include "util.h"

namespace shoal::proxy {

namespace {

/* Accepts per wake-up before yielding, so one busy listener cannot starve the loop. */
constexpr int kAcceptBatch = 64;
/* How long to stop accepting when the process or system is out of descriptors or memory. */
constexpr std::uint64_t kPauseMs = 100;

} // namespace

struct Listener::Impl {
	uv_poll_t poll{};
	uv_timer_t pause_timer{};
	UniqueFd sock;
	AcceptHandler on_accept;
	std::string local;
	int open_handles = 0;
	bool closing = false;
	LogLimiter error_log;
};

namespace {

using Impl = Listener::Impl;

void poll_cb(uv_poll_t *handle, int status, int events);

void handle_closed(uv_handle_t *handle)
{
	auto *impl = static_cast<Impl *>(handle->data);
	if (--impl->open_handles == 0)
		delete impl; /* closes the socket, now that libuv no longer watches it */
}

void resume_cb(uv_timer_t *timer)
{
	auto *impl = static_cast<Impl *>(timer->data);
	if (!impl->closing)
		uv_poll_start(&impl->poll, UV_READABLE, poll_cb);
}

void accept_some(Impl *impl)
{
	for (int i = 0; i < kAcceptBatch && !impl->closing; i++) {
		sockaddr_storage peer{};
		socklen_t len = sizeof peer;
		int fd = ::accept4(impl->sock.get(), reinterpret_cast<sockaddr *>(&peer), &len,
				   SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;
			if (err == EAGAIN || err == EWOULDBLOCK)
				return;
			/* accept(2): these are the client's problem, already gone; take the next one. */
			if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM ||
			    err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET ||
			    err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH)
				continue;
			/*
			 * EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending client stays queued and the socket
			 * stays readable, so polling on would spin. Pause and try again.
			 */
			if (impl->error_log.allow(uv_handle_get_loop(reinterpret_cast<uv_handle_t *>(&impl->poll))))
				service::logger("proxy")->error("accept on {}: {}; pausing accepts for {} ms{}",
								impl->local, service::errno_name(err), kPauseMs,
								suppressed_note(impl->error_log.take_suppressed()));
			uv_poll_stop(&impl->poll);
			uv_timer_start(&impl->pause_timer, resume_cb, kPauseMs, 0);
			return;
		}
		UniqueFd client(fd);
		impl->on_accept(std::move(client), peer);
	}
}

void poll_cb(uv_poll_t *handle, int status, int events)
{
	auto *impl = static_cast<Impl *>(handle->data);
	guarded("accept", [&] {
		if (impl->closing)
			return;
		if (status < 0) {
			/* libuv has stopped polling (it reports POLLERR as EBADF): try again shortly. */
			int err = 0;
			socklen_t len = sizeof err;
			if (::getsockopt(impl->sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0 || !err)
				err = -status;
			if (impl->error_log.allow(uv_handle_get_loop(reinterpret_cast<uv_handle_t *>(handle))))
				service::logger("proxy")->error("listening socket {}: {}; pausing accepts for {} ms{}",
								impl->local, service::errno_name(err), kPauseMs,
								suppressed_note(impl->error_log.take_suppressed()));
			uv_poll_stop(&impl->poll);
			uv_timer_start(&impl->pause_timer, resume_cb, kPauseMs, 0);
			return;
		}
		if (events & UV_READABLE)
			accept_some(impl);
	});
}

} // namespace

Result<std::unique_ptr<Listener>> Listener::open(uv_loop_t *loop, const sockaddr_storage &addr,
						 int backlog, AcceptHandler on_accept)
{
	UniqueFd sock(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!sock.is_valid())
		return errno_error(errno);
	/*
	 * SO_REUSEADDR is what lets a restarted proxy bind again at once: the relays its
	 * predecessor handed to splicer still hold established sockets on this port.
	 */
	int one = 1;
	if (::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		return errno_error(errno);
	/* [::]:P means IPv6 only, so 0.0.0.0:P can be listened on beside it. */
	if (addr.ss_family == AF_INET6 &&
	    ::setsockopt(sock.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		return errno_error(errno);
	socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
	if (::bind(sock.get(), reinterpret_cast<const sockaddr *>(&addr), len) < 0)
		return errno_error(errno);
	if (::listen(sock.get(), backlog) < 0)
		return errno_error(errno);

	sockaddr_storage bound{};
	socklen_t blen = sizeof bound;
	if (::getsockname(sock.get(), reinterpret_cast<sockaddr *>(&bound), &blen) < 0)
		return errno_error(errno);

	auto *impl = new Impl;
	impl->on_accept = std::move(on_accept);
	impl->local = proto::format_endpoint(bound);
	if (int r = uv_poll_init_socket(loop, &impl->poll, sock.get()); r < 0) {
		delete impl;
		return errno_error(-r);
	}
	impl->sock = std::move(sock);
	impl->poll.data = impl;
	uv_timer_init(loop, &impl->pause_timer);
	impl->pause_timer.data = impl;
	impl->open_handles = 2;
	uv_poll_start(&impl->poll, UV_READABLE, poll_cb);
	return std::unique_ptr<Listener>(new Listener(impl, impl->local));
}

Listener::~Listener()
{
	close();
}

void Listener::close()
{
	/* impl_ is freed by libuv's close callbacks: forget it here, so nothing touches it later. */
	Impl *impl = std::exchange(impl_, nullptr);
	if (!impl)
		return;
	impl->closing = true;
	uv_poll_stop(&impl->poll);
	uv_timer_stop(&impl->pause_timer);
	uv_close(reinterpret_cast<uv_handle_t *>(&impl->poll), handle_closed);
	uv_close(reinterpret_cast<uv_handle_t *>(&impl->pause_timer), handle_closed);
}

} // namespace shoal::proxy
