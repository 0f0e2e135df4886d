// Connector: socket(SOCK_NONBLOCK|SOCK_CLOEXEC) + connect, then wait for writable or the timeout on the loop.
#include "upstream.h"

#include <cerrno>
#include <netinet/in.h>
#include <sys/socket.h>

#include "util.h"

namespace shoal::proxy {

struct Connector::Impl {
	uv_poll_t poll{};
	uv_timer_t timer{};
	UniqueFd sock;
	Handler on_done;
	Connector *front = nullptr; /* the owner's handle, or null once the owner let go */
	int open_handles = 0;
	bool finished = false;

	/* Stops watching; the socket is closed with the Impl unless finish() took it. */
	void stop()
	{
		if (finished)
			return;
		finished = true;
		uv_poll_stop(&poll);
		uv_timer_stop(&timer);
		uv_close(reinterpret_cast<uv_handle_t *>(&poll), closed);
		uv_close(reinterpret_cast<uv_handle_t *>(&timer), closed);
	}

	/* Reports the outcome once; the handler may destroy the Connector. */
	void finish(Result<UniqueFd> result)
	{
		if (finished)
			return;
		stop();
		Handler h = std::move(on_done);
		if (h)
			h(std::move(result));
	}

	static void closed(uv_handle_t *handle)
	{
		auto *impl = static_cast<Impl *>(handle->data);
		if (--impl->open_handles > 0)
			return;
		if (impl->front)
			impl->front->impl_ = nullptr;
		delete impl;
	}
};

namespace {

using Impl = Connector::Impl;

void poll_cb(uv_poll_t *handle, int status, int events)
{
	auto *impl = static_cast<Impl *>(handle->data);
	guarded("upstream connect", [&] {
		if (impl->finished)
			return;
		/* libuv reports POLLERR as UV_EBADF: the socket's own error says what happened. */
		int err = 0;
		socklen_t len = sizeof err;
		if (::getsockopt(impl->sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (!err && status < 0)
			err = -status;
		if (!err && !(events & (UV_WRITABLE | UV_DISCONNECT)))
			return;
		if (err) {
			impl->finish(errno_error(err));
			return;
		}
		impl->finish(std::move(impl->sock));
	});
}

void timer_cb(uv_timer_t *timer)
{
	auto *impl = static_cast<Impl *>(timer->data);
	guarded("upstream connect timeout", [&] { impl->finish(errno_error(ETIMEDOUT)); });
}

} // namespace

Result<std::unique_ptr<Connector>> Connector::start(uv_loop_t *loop, const sockaddr_storage &addr,
						    std::uint64_t timeout_ms, Handler on_done)
{
	UniqueFd sock(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!sock.is_valid())
		return errno_error(errno);
	socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
	int r;
	do
		r = ::connect(sock.get(), reinterpret_cast<const sockaddr *>(&addr), len);
	while (r < 0 && errno == EINTR);
	/* 0 (a connect that completed at once) is reported through the poll like the rest. */
	if (r < 0 && errno != EINPROGRESS)
		return errno_error(errno);

	auto *impl = new Impl;
	if (int e = uv_poll_init_socket(loop, &impl->poll, sock.get()); e < 0) {
		delete impl;
		return errno_error(-e);
	}
	impl->sock = std::move(sock);
	impl->on_done = std::move(on_done);
	impl->poll.data = impl;
	uv_timer_init(loop, &impl->timer);
	impl->timer.data = impl;
	impl->open_handles = 2;
	uv_poll_start(&impl->poll, UV_WRITABLE | UV_DISCONNECT, poll_cb);
	uv_timer_start(&impl->timer, timer_cb, timeout_ms, 0);

	auto front = std::unique_ptr<Connector>(new Connector(impl));
	impl->front = front.get();
	return front;
}

Connector::~Connector()
{
	if (!impl_)
		return;
	impl_->front = nullptr;
	impl_->on_done = nullptr;
	impl_->stop();
}

} // namespace shoal::proxy
