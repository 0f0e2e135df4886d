// TcpRelay (splice through pooled pipes, half-close, backpressure) and UdpRelay (one datagram in flight per way).
#include "upstream_relay.h"

#include <cerrno>
#include <tuple>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream_connect.h"
#include "uv_util.h"

namespace shoal::tunnel {

namespace {

int socket_error(int fd, int fallback)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
		return err;
	return fallback;
}

} // namespace

/* ---------------- both ---------------- */

Relay::Relay(RelayContext &ctx, UniqueFd client, UniqueFd upstream, const char *kind)
	: ctx_(ctx), client_(std::move(client)), upstream_(std::move(upstream)), kind_(kind)
{
}

Relay::~Relay()
{
	/* Polls go before the sockets close (members are destroyed after this body). */
	close_polls();
}

void Relay::close_polls()
{
	for (Poll **p : {&poll_client_, &poll_upstream_}) {
		if (!*p)
			continue;
		uv_close(reinterpret_cast<uv_handle_t *>(&(*p)->handle),
			 [](uv_handle_t *h) { delete static_cast<Poll *>(h->data); });
		*p = nullptr;
	}
	events_client_ = events_upstream_ = -1;
}

bool Relay::start(EndHandler on_end)
{
	on_end_ = std::move(on_end);
	for (bool client : {true, false}) {
		auto *p = new Poll{{}, this, client};
		/* uv_poll_init_socket also makes the socket non-blocking, which splice() relies on. */
		if (uv_poll_init_socket(ctx_.loop, &p->handle, client ? client_.get() : upstream_.get()) < 0) {
			delete p;
			close_polls();
			return false;
		}
		p->handle.data = p;
		(client ? poll_client_ : poll_upstream_) = p;
	}
	update();
	return true;
}

void Relay::watch(int client_events, int upstream_events)
{
	auto cb = [](uv_poll_t *h, int status, int events) {
		auto *p = static_cast<Poll *>(h->data);
		guarded(p->relay->kind_, [&] { p->relay->on_event(p->client, status, events); });
	};
	for (auto [p, current, wanted] : {std::tuple{poll_client_, &events_client_, client_events},
					  std::tuple{poll_upstream_, &events_upstream_, upstream_events}}) {
		if (!p || wanted == *current)
			continue;
		*current = wanted;
		if (wanted == 0)
			uv_poll_stop(&p->handle);
		else
			uv_poll_start(&p->handle, wanted, cb);
	}
}

/* ---------------- TCP ---------------- */

TcpRelay::TcpRelay(RelayContext &ctx, UniqueFd client, UniqueFd upstream)
	: Relay(ctx, std::move(client), std::move(upstream), "tcp relay")
{
	up_.src = down_.dst = client_.get();
	up_.dst = down_.src = upstream_.get();
	up_.bytes = &bytes_up_;
	down_.bytes = &bytes_down_;
}

void TcpRelay::update()
{
	if (ended_)
		return;
	int ec = 0, eu = 0;
	if (up_.want_read)
		ec |= UV_READABLE | UV_DISCONNECT;
	if (down_.want_write)
		ec |= UV_WRITABLE;
	if (down_.want_read)
		eu |= UV_READABLE | UV_DISCONNECT;
	if (up_.want_write)
		eu |= UV_WRITABLE;
	watch(ec, eu);
}

void TcpRelay::on_event(bool client, int status, int events)
{
	if (ended_)
		return;
	int fd = client ? client_.get() : upstream_.get();
	if (status < 0) {
		end(socket_error(fd, -status), fd);
		return;
	}
	Way &reader = client ? up_ : down_; /* this socket is its src */
	Way &writer = client ? down_ : up_; /* this socket is its dst */
	int err = 0;
	if (events & UV_WRITABLE)
		err = pump(writer);
	if (!err && (events & (UV_READABLE | UV_DISCONNECT)))
		err = pump(reader);
	if (err) {
		end(err, -1);
		return;
	}
	if (up_.finished() && down_.finished()) {
		end(0, -1);
		return;
	}
	update();
}

int TcpRelay::pump(Way &w)
{
	for (unsigned round = 0; round < ctx_.budget; round++) {
		if (w.in_pipe > 0) {
			ssize_t n = ::splice(w.pipe.read_end.get(), nullptr, w.dst, nullptr, w.in_pipe,
					     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					return errno;
				/* dst is full: stop reading src until it drains (backpressure). */
				w.want_write = true;
				w.want_read = false;
				return 0;
			}
			w.in_pipe -= static_cast<std::size_t>(n);
			*w.bytes += static_cast<std::uint64_t>(n);
			if (w.in_pipe > 0)
				continue;
			/* Empty: a relay holds a pipe only while bytes are in flight. */
			ctx_.pipes.put(std::move(w.pipe));
			w.pipe = Pipe{};
		}
		if (!w.pending.empty()) {
			ssize_t n = ::send(w.dst, w.pending.data(), w.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					return errno;
				w.want_write = true;
				w.want_read = false;
				return 0;
			}
			w.pending.erase(0, static_cast<std::size_t>(n));
			*w.bytes += static_cast<std::uint64_t>(n);
			if (!w.pending.empty())
				continue;
			std::string().swap(w.pending); /* an idle way holds no heap */
		}
		w.want_write = false;
		if (w.eof) {
			if (!w.shut) {
				/* Half-close: the other way keeps flowing. ENOTCONN: that peer is gone already. */
				if (::shutdown(w.dst, SHUT_WR) < 0 && errno != ENOTCONN)
					return errno;
				w.shut = true;
			}
			w.want_read = false;
			return 0;
		}
		if (!w.pipe.valid()) {
			w.pipe = ctx_.pipes.get();
			if (!w.pipe.valid()) {
				int r = copy_once(w);
				if (r == EAGAIN) {
					w.want_read = true;
					return 0;
				}
				if (r)
					return r;
				continue;
			}
		}
		ssize_t n = ::splice(w.src, nullptr, w.pipe.write_end.get(), nullptr, ctx_.pipes.chunk(),
				     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return errno;
			/* The pipe was empty, so EAGAIN can only mean src has nothing now. */
			ctx_.pipes.put(std::move(w.pipe));
			w.pipe = Pipe{};
			w.want_read = true;
			return 0;
		}
		if (n == 0) {
			ctx_.pipes.put(std::move(w.pipe));
			w.pipe = Pipe{};
			w.eof = true;
			continue;
		}
		w.in_pipe = static_cast<std::size_t>(n);
	}
	/* Out of budget with work left: level-triggered polling brings us back. */
	w.want_write = w.holds_bytes() || (w.eof && !w.shut);
	w.want_read = !w.want_write && !w.eof;
	return 0;
}

int TcpRelay::copy_once(Way &w)
{
	ssize_t n;
	do
		n = ::recv(w.src, ctx_.scratch.data(), ctx_.scratch.size(), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno;
	if (n == 0) {
		w.eof = true;
		return 0;
	}
	ssize_t m;
	do
		m = ::send(w.dst, ctx_.scratch.data(), static_cast<std::size_t>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
	while (m < 0 && errno == EINTR);
	if (m < 0) {
		if (errno != EAGAIN)
			return errno;
		m = 0;
	}
	*w.bytes += static_cast<std::uint64_t>(m);
	if (m < n)
		w.pending.assign(reinterpret_cast<const char *>(ctx_.scratch.data()) + m, static_cast<std::size_t>(n - m));
	return 0;
}

void TcpRelay::end(int error, int failed_fd)
{
	if (ended_)
		return;
	ended_ = true;
	close_polls();
	if (error) {
		/*
		 * One side failed: the other must not mistake the end for a clean EOF, so it gets a
		 * reset when the relay's owner closes it. The failed side is dead already.
		 */
		for (int fd : {client_.get(), upstream_.get()})
			if (fd != failed_fd)
				set_reset_on_close(fd);
	}
	EndHandler h = std::move(on_end_);
	if (h)
		h(error); /* may destroy this */
}

/* ---------------- UDP ---------------- */

namespace {
constexpr int kEndOfFlow = -1;
}

UdpRelay::UdpRelay(RelayContext &ctx, UniqueFd client, UniqueFd upstream)
	: Relay(ctx, std::move(client), std::move(upstream), "udp relay")
{
	up_.src = down_.dst = client_.get();
	up_.dst = down_.src = upstream_.get();
	up_.bytes = &bytes_up_;
	down_.bytes = &bytes_down_;
	int type = 0;
	socklen_t len = sizeof type;
	if (::getsockopt(client_.get(), SOL_SOCKET, SO_TYPE, &type, &len) == 0)
		up_.src_is_seqpacket = type == SOCK_SEQPACKET;
}

void UdpRelay::update()
{
	if (ended_)
		return;
	int ec = 0, eu = 0;
	if (!up_.has_pending)
		ec |= UV_READABLE;
	if (down_.has_pending)
		ec |= UV_WRITABLE;
	if (!down_.has_pending)
		eu |= UV_READABLE;
	if (up_.has_pending)
		eu |= UV_WRITABLE;
	watch(ec, eu);
}

void UdpRelay::on_event(bool client, int status, int events)
{
	if (ended_)
		return;
	int fd = client ? client_.get() : upstream_.get();
	if (status < 0) {
		int err = socket_error(fd, -status);
		/*
		 * An ICMP error on the connected upstream socket (the server's port is closed, the
		 * host unreachable) costs a datagram, not the flow. libuv stopped the handle on
		 * POLLERR: forget its mask so update() starts it again.
		 */
		if (!client && (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH ||
				err == EMSGSIZE)) {
			dropped_++;
			forget_mask(false);
			update();
			return;
		}
		end(err);
		return;
	}
	Way &reader = client ? up_ : down_;
	Way &writer = client ? down_ : up_;
	int err = 0;
	if (events & UV_WRITABLE)
		err = pump(writer);
	if (!err && (events & (UV_READABLE | UV_DISCONNECT)))
		err = pump(reader);
	if (err) {
		end(err == kEndOfFlow ? 0 : err);
		return;
	}
	update();
}

/* Sends one datagram; 0 when it left (or was lost to an ICMP error), EAGAIN when dst is full. */
int UdpRelay::send_one(Way &w, const std::uint8_t *data, std::size_t len)
{
	ssize_t n;
	do
		n = ::send(w.dst, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		*w.bytes += static_cast<std::uint64_t>(n);
		return 0;
	}
	if (errno == EAGAIN || errno == ENOBUFS)
		return EAGAIN;
	if (errno == ECONNREFUSED || errno == EMSGSIZE || errno == EHOSTUNREACH || errno == ENETUNREACH) {
		dropped_++;
		return 0;
	}
	return errno;
}

int UdpRelay::pump(Way &w)
{
	for (unsigned round = 0; round < ctx_.budget; round++) {
		if (w.has_pending) {
			int r = send_one(w, w.pending.data(), w.pending.size());
			if (r == EAGAIN)
				return 0;
			if (r)
				return r;
			w.has_pending = false;
		}
		ssize_t n;
		do
			n = ::recv(w.src, ctx_.scratch.data(), ctx_.scratch.size(), MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) {
				dropped_++;
				continue;
			}
			return errno;
		}
		if (n == 0 && w.src_is_seqpacket)
			return kEndOfFlow; /* bumblebee closed its side: the flow is over */
		int r = send_one(w, ctx_.scratch.data(), static_cast<std::size_t>(n));
		if (r == EAGAIN) {
			/* Kept (the vector's capacity is reused), and the reader waits for the writer. */
			w.pending.assign(ctx_.scratch.data(), ctx_.scratch.data() + n);
			w.has_pending = true;
			return 0;
		}
		if (r)
			return r;
	}
	return 0;
}

void UdpRelay::end(int error)
{
	if (ended_)
		return;
	ended_ = true;
	close_polls();
	EndHandler h = std::move(on_end_);
	if (h)
		h(error);
}

} // namespace shoal::tunnel
