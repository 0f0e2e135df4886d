// Connector: socket(SOCK_NONBLOCK | SOCK_CLOEXEC), connect(), then writable-or-timeout on the loop.
#include "upstream_connect.h"

#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "uv_util.h"

namespace shoal::tunnel {

namespace {

socklen_t sockaddr_len(const sockaddr_storage &ss)
{
	return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

} // namespace

std::unique_ptr<Connector> Connector::start(uv_loop_t *loop, const sockaddr_storage &to,
					    std::uint64_t timeout_ms, Done done)
{
	std::unique_ptr<Connector> c(new Connector);
	c->done_ = std::move(done);
	c->timer_ = new uv_timer_t;
	uv_timer_init(loop, c->timer_);
	c->timer_->data = c.get();

	c->sock_.reset(::socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!c->sock_.is_valid()) {
		c->early_error_ = errno;
		uv_timer_start(c->timer_, timer_cb, 0, 0);
		return c;
	}
	set_nodelay(c->sock_.get());
	int r;
	do
		r = ::connect(c->sock_.get(), reinterpret_cast<const sockaddr *>(&to), sockaddr_len(to));
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EINPROGRESS) {
		c->early_error_ = errno;
		uv_timer_start(c->timer_, timer_cb, 0, 0);
		return c;
	}
	c->poll_ = new uv_poll_t;
	if (uv_poll_init_socket(loop, c->poll_, c->sock_.get()) < 0) {
		delete c->poll_;
		c->poll_ = nullptr;
		c->early_error_ = EIO;
		uv_timer_start(c->timer_, timer_cb, 0, 0);
		return c;
	}
	c->poll_->data = c.get();
	/* Writable (or an error) means connect() has an outcome, even when it succeeded at once. */
	uv_poll_start(c->poll_, UV_WRITABLE | UV_DISCONNECT, poll_cb);
	uv_timer_start(c->timer_, timer_cb, timeout_ms, 0);
	return c;
}

Connector::~Connector()
{
	/* Stop polling before the socket closes (libuv must never poll a closed fd). */
	close_and_delete(poll_);
	close_and_delete(timer_);
}

void Connector::finish(int error)
{
	if (finished_)
		return;
	finished_ = true;
	if (poll_)
		uv_poll_stop(poll_);
	uv_timer_stop(timer_);
	UniqueFd sock;
	if (!error) {
		/* The socket leaves with the caller, so our poll must let go of it first. */
		close_and_delete(poll_);
		poll_ = nullptr;
		sock = std::move(sock_);
	}
	Done done = std::move(done_);
	if (done)
		done(error, std::move(sock)); /* may destroy this */
}

void Connector::poll_cb(uv_poll_t *handle, int status, int events)
{
	auto *self = static_cast<Connector *>(handle->data);
	guarded("upstream connect", [&] {
		int err = 0;
		socklen_t len = sizeof err;
		if (::getsockopt(self->sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		/* libuv reports POLLERR as EBADF; SO_ERROR says what really happened. */
		if (!err && status < 0)
			err = -status;
		if (!err && !(events & (UV_WRITABLE | UV_DISCONNECT)))
			return;
		if (!err) {
			/* Writable and no error can still be a reset that raced us: ask the socket. */
			sockaddr_storage peer;
			socklen_t plen = sizeof peer;
			if (::getpeername(self->sock_.get(), reinterpret_cast<sockaddr *>(&peer), &plen) < 0)
				err = errno == ENOTCONN ? ECONNREFUSED : errno;
		}
		self->finish(err);
	});
}

void Connector::timer_cb(uv_timer_t *handle)
{
	auto *self = static_cast<Connector *>(handle->data);
	guarded("upstream connect timeout", [&] { self->finish(self->early_error_ ? self->early_error_ : ETIMEDOUT); });
}

UniqueFd connect_udp(const sockaddr_storage &to, int &error)
{
	UniqueFd sock(::socket(to.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!sock.is_valid()) {
		error = errno;
		return {};
	}
	if (::connect(sock.get(), reinterpret_cast<const sockaddr *>(&to), sockaddr_len(to)) < 0) {
		error = errno;
		return {};
	}
	error = 0;
	return sock;
}

void set_nodelay(int fd)
{
	int one = 1;
	::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void set_reset_on_close(int fd)
{
	linger l{1, 0};
	::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

} // namespace shoal::tunnel
