// Channel: a SOCK_SEQPACKET connection on a libuv loop, with backpressure and safe closing.
#include <shoal/fdpass/channel.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>

namespace shoal {

/*
 * The state lives apart from the Channel object because libuv still owns the poll handle
 * after close() until close_cb runs on a later loop iteration: the descriptor is closed only
 * then, and handlers that destroy their own Channel leave this state valid until they return.
 */
struct Channel::Impl {
	uv_poll_t poll{};
	UniqueFd sock;
	ChannelLimits limits;
	MessageHandler on_message;
	CloseHandler on_close;

	std::deque<OutMessage> queue;
	std::size_t queue_bytes = 0;
	std::size_t queue_fds = 0;

	int events = 0;
	int pending_error = 0;
	std::size_t max_datagram = 0; /* what the kernel will send in one datagram (SO_SNDBUF - 32) */
	bool handle_closed = false;  /* libuv has let go: the socket is closed */
	bool orphaned = false;       /* the Channel object is gone: whoever finishes last frees this */
	bool started = false;
	bool paused = false;
	bool backpressure = false;
	bool closing = false;

	bool reading() const { return started && !paused && !backpressure && !closing && !pending_error; }
};

namespace {

using Impl = Channel::Impl;

void poll_cb(uv_poll_t *handle, int status, int events);

void close_cb(uv_handle_t *handle)
{
	auto *impl = static_cast<Impl *>(handle->data);
	impl->handle_closed = true;
	impl->sock.reset();
	if (impl->orphaned)
		delete impl;
}

/* The real reason a socket failed: libuv reports POLLERR as EBADF. */
int socket_error(int fd, int fallback)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
		return err;
	return fallback;
}

void close_impl(Impl *impl)
{
	if (impl->closing)
		return;
	impl->closing = true;
	impl->queue.clear();
	impl->queue_bytes = impl->queue_fds = 0;
	uv_poll_stop(&impl->poll);
	uv_close(reinterpret_cast<uv_handle_t *>(&impl->poll), close_cb);
}

void update_backpressure(Impl *impl)
{
	const ChannelLimits &l = impl->limits;
	if (impl->queue_bytes > l.queue_bytes / 2 || impl->queue_fds > l.queue_fds / 2)
		impl->backpressure = true;
	else if (impl->queue_bytes <= l.queue_bytes / 4 && impl->queue_fds <= l.queue_fds / 4)
		impl->backpressure = false;
}

void update_poll(Impl *impl)
{
	if (impl->closing)
		return;
	int events = 0;
	if (impl->reading())
		events |= UV_READABLE | UV_DISCONNECT;
	/* A broken socket is always writable: polling for it surfaces the error on the loop. */
	if (!impl->queue.empty() || impl->pending_error)
		events |= UV_WRITABLE;
	if (events == impl->events)
		return;
	impl->events = events;
	if (events == 0)
		uv_poll_stop(&impl->poll);
	else
		uv_poll_start(&impl->poll, events, poll_cb);
}

void fail(Impl *impl, int error)
{
	if (impl->closing)
		return;
	std::deque<OutMessage> unsent = std::move(impl->queue);
	impl->queue.clear();
	impl->queue_bytes = impl->queue_fds = 0;
	uv_poll_stop(&impl->poll);
	impl->events = 0;
	impl->pending_error = error;
	/* The handler may destroy the Channel; close_impl is idempotent and impl outlives it. */
	if (impl->on_close)
		impl->on_close(error, std::move(unsent));
	close_impl(impl);
}

std::vector<int> raw_fds(const OutMessage &m)
{
	std::vector<int> fds;
	fds.reserve(m.fds.size());
	for (const UniqueFd &fd : m.fds)
		fds.push_back(fd.get());
	return fds;
}

/* Returns false when the channel failed. */
bool flush(Impl *impl)
{
	while (!impl->queue.empty()) {
		OutMessage &m = impl->queue.front();
		auto r = send_message(impl->sock.get(), m.data, raw_fds(m));
		if (!r) {
			if (r.error() == EAGAIN)
				break;
			fail(impl, r.error());
			return false;
		}
		impl->queue_bytes -= m.data.size();
		impl->queue_fds -= m.fds.size();
		impl->queue.pop_front();
	}
	update_backpressure(impl);
	return true;
}

void poll_cb(uv_poll_t *handle, int status, int events)
{
	Impl *impl = static_cast<Impl *>(handle->data);
	if (impl->closing)
		return;
	if (impl->pending_error) {
		fail(impl, impl->pending_error);
		return;
	}
	if (status < 0) {
		fail(impl, socket_error(impl->sock.get(), -status));
		return;
	}
	if ((events & UV_WRITABLE) && !flush(impl))
		return;

	if (events & (UV_READABLE | UV_DISCONNECT)) {
		for (unsigned i = 0; i < impl->limits.batch && impl->reading(); i++) {
			auto r = recv_message(impl->sock.get(), impl->limits.max_message,
					      impl->limits.max_fds);
			if (!r) {
				if (r.error() == EAGAIN)
					break;
				fail(impl, r.error());
				return;
			}
			impl->on_message(std::move(*r));
			if (impl->closing)
				return;
		}
	}
	update_poll(impl);
}

} // namespace

Channel::Channel(Impl *impl) : impl_(impl) {}

Result<std::unique_ptr<Channel>> Channel::open(uv_loop_t *loop, UniqueFd sock, ChannelLimits limits)
{
	int flags = ::fcntl(sock.get(), F_GETFL);
	if (flags < 0 || ::fcntl(sock.get(), F_SETFL, flags | O_NONBLOCK) < 0)
		return errno_error(errno);

	auto *impl = new Impl;
	impl->limits = limits;
	if (impl->limits.batch == 0)
		impl->limits.batch = 1;
	int r = uv_poll_init_socket(loop, &impl->poll, sock.get());
	if (r < 0) {
		delete impl;
		return errno_error(-r);
	}
	int sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	if (::getsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0 && sndbuf > 32)
		impl->max_datagram = static_cast<std::size_t>(sndbuf) - 32;
	impl->sock = std::move(sock);
	impl->poll.data = impl;
	return std::unique_ptr<Channel>(new Channel(impl));
}

Channel::~Channel()
{
	close();
	if (impl_->handle_closed)
		delete impl_;
	else
		impl_->orphaned = true; /* close_cb frees it */
}

void Channel::start(MessageHandler on_message, CloseHandler on_close)
{
	if (impl_->closing)
		return;
	impl_->on_message = std::move(on_message);
	impl_->on_close = std::move(on_close);
	impl_->started = true;
	update_poll(impl_);
}

void Channel::pause()
{
	impl_->paused = true;
	update_poll(impl_);
}

void Channel::resume()
{
	impl_->paused = false;
	update_poll(impl_);
}

Expected<void, Refused> Channel::send(OutMessage message)
{
	Impl *impl = impl_;
	if (impl->closing || impl->pending_error)
		return Unexpected(Refused{EPIPE, std::move(message)});
	if (message.fds.size() > kKernelMaxFds)
		return Unexpected(Refused{E2BIG, std::move(message)});
	/* Refuse now what the kernel would refuse later, when it would take the channel down. */
	if (impl->max_datagram && message.data.size() > impl->max_datagram)
		return Unexpected(Refused{EMSGSIZE, std::move(message)});

	if (impl->queue.empty()) {
		auto r = send_message(impl->sock.get(), message.data, raw_fds(message));
		if (r)
			return {};
		int err = r.error();
		if (err == EMSGSIZE)
			return Unexpected(Refused{EMSGSIZE, std::move(message)});
		if (err != EAGAIN) {
			/* Report the failure from the loop, never from inside the caller's send(). */
			impl->pending_error = err;
			update_poll(impl);
			return Unexpected(Refused{EPIPE, std::move(message)});
		}
	}

	const ChannelLimits &l = impl->limits;
	bool fits = impl->queue_bytes + message.data.size() <= l.queue_bytes &&
		    impl->queue_fds + message.fds.size() <= l.queue_fds;
	if (!fits && !impl->queue.empty())
		return Unexpected(Refused{ENOBUFS, std::move(message)});

	impl->queue_bytes += message.data.size();
	impl->queue_fds += message.fds.size();
	impl->queue.push_back(std::move(message));
	update_backpressure(impl);
	update_poll(impl);
	return {};
}

void Channel::close()
{
	close_impl(impl_);
}

std::deque<OutMessage> Channel::take_queue()
{
	std::deque<OutMessage> out = std::move(impl_->queue);
	impl_->queue.clear();
	impl_->queue_bytes = impl_->queue_fds = 0;
	update_backpressure(impl_);
	update_poll(impl_);
	return out;
}

bool Channel::is_open() const { return !impl_->closing && !impl_->pending_error; }
bool Channel::congested() const { return impl_->backpressure; }
std::size_t Channel::queued_bytes() const { return impl_->queue_bytes; }
std::size_t Channel::queued_fds() const { return impl_->queue_fds; }
std::size_t Channel::queued_messages() const { return impl_->queue.size(); }
int Channel::fd() const { return impl_->closing ? -1 : impl_->sock.get(); }

} // namespace shoal
