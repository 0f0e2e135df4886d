// Relay: the splice/copy state machine of one socket pair, driven by libuv readiness.
#include "relay.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <shoal/proto/base64.h>

namespace shoal::splicer {

/*
 * Each direction alternates: fill the pipe from src only while it is empty, then drain it
 * into dst. Because a read happens only into an empty pipe, EAGAIN from splice() into the
 * pipe can only mean "src has nothing" (a pipe fills by slots, not bytes, so "pipe full"
 * cannot be told from a byte count), and a direction waits on exactly one thing: src
 * readable, or dst writable. Small reads go through a stack buffer instead (like HAProxy's
 * splice-auto): copying a few bytes is cheaper than two splices, and an idle relay holds
 * no buffer and no pipe at all.
 */

namespace {

constexpr std::size_t kCopyBuffer = 16384;

std::int64_t now_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

int socket_error(int fd, int fallback)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
		return err;
	return fallback;
}

nlohmann::json direction_record(const Direction &d)
{
	return {{"bytes", d.bytes}, {"in_pipe", d.in_pipe}, {"pipe", d.pipe.has_value()},
		{"pending", proto::base64_encode(d.pending)}, {"splice_mode", d.splice_mode},
		{"small", d.small}, {"eof", d.eof}, {"shut", d.shut}};
}

void restore_direction(Direction &d, const nlohmann::json &j)
{
	d.bytes = j.at("bytes").get<std::uint64_t>();
	d.in_pipe = j.at("in_pipe").get<std::size_t>();
	d.pending = proto::base64_decode(j.at("pending").get<std::string>()).value_or("");
	d.splice_mode = j.at("splice_mode").get<bool>();
	d.small = j.at("small").get<unsigned>();
	d.eof = j.at("eof").get<bool>();
	d.shut = j.at("shut").get<bool>();
}

} // namespace

Relay::Relay(RelayContext &ctx, UniqueFd a, UniqueFd b) : ctx_(ctx), a_(std::move(a)), b_(std::move(b))
{
	ab_.src = ba_.dst = a_.get();
	ab_.dst = ba_.src = b_.get();
	started_ms = now_ms();
}

Relay::~Relay()
{
	stop_polls();
	release_pipe(ab_, true);
	release_pipe(ba_, true);
}

bool Relay::start(EndHandler on_end)
{
	on_end_ = std::move(on_end);
	/* uv_poll_init_socket makes both sockets non-blocking (FIONBIO), which splice() relies on. */
	for (bool is_a : {true, false}) {
		auto *p = new Poll{{}, this, is_a};
		if (uv_poll_init_socket(ctx_.loop, &p->handle, is_a ? a_.get() : b_.get()) < 0) {
			delete p;
			stop_polls();
			return false;
		}
		p->handle.data = p;
		(is_a ? poll_a_ : poll_b_) = p;
	}
	/* Whatever was already buffered (or pending from before an upgrade) moves first. */
	ab_.want_write = ab_.holds_bytes();
	ba_.want_write = ba_.holds_bytes();
	ab_.want_read = !ab_.eof && !ab_.want_write;
	ba_.want_read = !ba_.eof && !ba_.want_write;
	if (ab_.eof && !ab_.holds_bytes())
		ab_.want_write = !ab_.shut; /* let pump() pass the EOF on */
	if (ba_.eof && !ba_.holds_bytes())
		ba_.want_write = !ba_.shut;
	update();
	return true;
}

/*
 * The runtime never runs the loop between pause() and resume()/abandon() (the handoff is
 * synchronous), so a flag is a safe point: no callback can move a byte in between, and
 * leaving epoll alone saves two epoll_ctl() per relay on the upgrade's critical path.
 */
void Relay::pause()
{
	paused_ = true;
}

void Relay::resume()
{
	paused_ = false;
	update();
}

void Relay::stop_polls()
{
	for (Poll **pp : {&poll_a_, &poll_b_}) {
		if (!*pp)
			continue;
		uv_poll_stop(&(*pp)->handle);
		uv_close(reinterpret_cast<uv_handle_t *>(&(*pp)->handle),
			 [](uv_handle_t *h) { delete static_cast<Poll *>(h->data); });
		*pp = nullptr;
	}
	events_a_ = events_b_ = -1;
}

void Relay::update()
{
	if (ended_)
		return;
	auto apply = [this](Poll *p, int &current, int events) {
		if (!p || events == current)
			return;
		current = events;
		if (events == 0) {
			uv_poll_stop(&p->handle);
			return;
		}
		uv_poll_start(&p->handle, events, [](uv_poll_t *h, int status, int ev) {
			auto *poll = static_cast<Poll *>(h->data);
			poll->relay->on_event(poll->is_a, status, ev);
		});
	};
	int ea = 0, eb = 0;
	if (!paused_) {
		if (ab_.want_read)
			ea |= UV_READABLE | UV_DISCONNECT;
		if (ba_.want_write)
			ea |= UV_WRITABLE;
		if (ba_.want_read)
			eb |= UV_READABLE | UV_DISCONNECT;
		if (ab_.want_write)
			eb |= UV_WRITABLE;
	}
	apply(poll_a_, events_a_, ea);
	apply(poll_b_, events_b_, eb);
}

void Relay::on_event(bool is_a, int status, int events)
{
	if (paused_)
		return;
	if (status < 0) {
		/* libuv reports POLLERR as EBADF; the socket knows the real error (ECONNRESET, …). */
		end(EndReason::error, socket_error(is_a ? a_.get() : b_.get(), -status));
		return;
	}
	Direction &reader = is_a ? ab_ : ba_; /* this socket is its src */
	Direction &writer = is_a ? ba_ : ab_; /* this socket is its dst */
	int err = 0;
	if (events & UV_WRITABLE)
		err = pump(writer);
	if (!err && (events & (UV_READABLE | UV_DISCONNECT)))
		err = pump(reader);
	if (err) {
		end(EndReason::error, err);
		return;
	}
	if (ab_.finished() && ba_.finished()) {
		end(EndReason::eof, 0);
		return;
	}
	update();
}

int Relay::pump(Direction &d)
{
	for (unsigned round = 0; round < ctx_.config.budget; round++) {
		if (d.holds_bytes()) {
			int r = flush(d);
			if (r == EAGAIN) {
				d.want_write = true;
				d.want_read = false;
				return 0;
			}
			if (r)
				return r;
		}
		d.want_write = false;
		if (d.eof) {
			if (!d.shut) {
				/* Half-close: the other way keeps flowing. ENOTCONN: the peer is gone already. */
				if (::shutdown(d.dst, SHUT_WR) < 0 && errno != ENOTCONN)
					return errno;
				d.shut = true;
			}
			d.want_read = false;
			return 0;
		}
		int r = d.splice_mode ? read_splice(d) : read_copy(d);
		if (r == EAGAIN) {
			d.want_read = true;
			return 0;
		}
		if (r)
			return r;
	}
	/* Out of budget with work left: stay registered; level-triggered polling comes back. */
	d.want_write = d.holds_bytes() || (d.eof && !d.shut);
	d.want_read = !d.want_write && !d.eof;
	return 0;
}

int Relay::flush(Direction &d)
{
	while (d.in_pipe > 0) {
		ssize_t n = ::splice(d.pipe->read_end.get(), nullptr, d.dst, nullptr, d.in_pipe,
				     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0) {
			d.in_pipe = 0; /* cannot happen with bytes in the pipe; do not spin on it */
			break;
		}
		d.in_pipe -= static_cast<std::size_t>(n);
		d.bytes += static_cast<std::uint64_t>(n);
		ctx_.splices++;
		last_activity_ = std::chrono::steady_clock::now();
	}
	if (d.pipe && d.in_pipe == 0)
		release_pipe(d, false);
	while (!d.pending.empty()) {
		ssize_t n = ::send(d.dst, d.pending.data(), d.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		d.pending.erase(0, static_cast<std::size_t>(n));
		d.bytes += static_cast<std::uint64_t>(n);
		last_activity_ = std::chrono::steady_clock::now();
	}
	std::string().swap(d.pending); /* an idle direction holds no heap */
	return 0;
}

int Relay::read_splice(Direction &d)
{
	if (!d.pipe) {
		d.pipe = ctx_.pool->get();
		if (!d.pipe) {
			ctx_.copy_fallbacks++;
			d.splice_mode = false;
			return read_copy(d);
		}
	}
	ssize_t n;
	do {
		n = ::splice(d.src, nullptr, d.pipe->write_end.get(), nullptr, ctx_.config.splice_len,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	} while (n < 0 && errno == EINTR);
	if (n <= 0) {
		int err = n == 0 ? 0 : errno;
		release_pipe(d, false); /* empty: hold a pipe only while bytes are in flight */
		if (n == 0)
			d.eof = true;
		return err;
	}
	d.in_pipe = static_cast<std::size_t>(n);
	ctx_.splices++;
	last_activity_ = std::chrono::steady_clock::now();
	if (static_cast<std::size_t>(n) < ctx_.config.bulk_read) {
		if (++d.small >= ctx_.config.small_splices)
			d.splice_mode = false;
	} else {
		d.small = 0;
	}
	return 0;
}

int Relay::read_copy(Direction &d)
{
	char buf[kCopyBuffer];
	ssize_t n;
	do {
		n = ::recv(d.src, buf, sizeof(buf), MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		d.eof = true;
		return 0;
	}
	if (n < 0)
		return errno;
	ctx_.copies++;
	last_activity_ = std::chrono::steady_clock::now();
	std::size_t got = static_cast<std::size_t>(n);
	ssize_t m;
	do {
		m = ::send(d.dst, buf, got, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (m < 0 && errno == EINTR);
	if (m < 0) {
		if (errno != EAGAIN)
			return errno;
		m = 0;
	}
	d.bytes += static_cast<std::uint64_t>(m);
	if (static_cast<std::size_t>(m) < got)
		d.pending.assign(buf + m, got - static_cast<std::size_t>(m));
	/* A full buffer means bulk: let splice carry the rest. */
	if (got >= ctx_.config.bulk_read && got == sizeof(buf)) {
		d.splice_mode = true;
		d.small = 0;
	}
	return 0;
}

void Relay::release_pipe(Direction &d, bool may_hold_bytes)
{
	if (!d.pipe)
		return;
	if (may_hold_bytes && d.in_pipe > 0)
		ctx_.pool->discard(std::move(*d.pipe));
	else
		ctx_.pool->put(std::move(*d.pipe));
	d.pipe.reset();
	if (may_hold_bytes)
		d.in_pipe = 0;
}

void Relay::end(EndReason reason, int error)
{
	if (ended_)
		return;
	ended_ = true;
	stop_polls();
	/* The handler destroys this relay: nothing may touch it afterwards. */
	if (on_end_)
		on_end_(*this, reason, error);
}

std::pair<UniqueFd, UniqueFd> Relay::finish(Unsent &a_to_b, Unsent &b_to_a)
{
	ended_ = true;
	stop_polls();
	for (auto [d, out] : {std::pair{&ab_, &a_to_b}, std::pair{&ba_, &b_to_a}}) {
		(void)flush(*d);
		if (d->pipe && d->in_pipe > 0) {
			/* The pipe already holds them: hand over its read end, close the write end. */
			out->bytes = d->in_pipe;
			out->pipe = std::move(d->pipe->read_end);
			d->pipe.reset();
			d->in_pipe = 0;
			ctx_.pool->forget(1);
		} else if (!d->pending.empty()) {
			/* At most one copy buffer (16 KiB): it fits a fresh pipe's 64 KiB at once. */
			int fds[2];
			if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
				UniqueFd rd(fds[0]), wr(fds[1]);
				ssize_t n = ::write(wr.get(), d->pending.data(), d->pending.size());
				if (n == static_cast<ssize_t>(d->pending.size())) {
					out->bytes = d->pending.size();
					out->pipe = std::move(rd);
				}
			}
			std::string().swap(d->pending);
		}
		release_pipe(*d, true);
	}
	return {std::move(a_), std::move(b_)};
}

std::pair<UniqueFd, UniqueFd> Relay::release()
{
	ended_ = true;
	stop_polls();
	release_pipe(ab_, true);
	release_pipe(ba_, true);
	return {std::move(a_), std::move(b_)};
}

void Relay::abandon()
{
	ended_ = true;
	stop_polls();
	/* The pipes (and their bytes) live on in the new process; ours are just references. */
	for (Direction *d : {&ab_, &ba_}) {
		if (d->pipe) {
			ctx_.pool->forget(1);
			d->pipe.reset();
			d->in_pipe = 0;
		}
	}
}

nlohmann::json Relay::record() const
{
	auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
									   last_activity_);
	return {{"task", task},
		{"client", client.to_json()},
		{"request_id", request_id},
		{"metadata", metadata},
		{"idle_timeout_ms", idle_timeout_ms},
		{"started_ms", started_ms},
		{"idle_ms", idle.count()},
		{"a_to_b", direction_record(ab_)},
		{"b_to_a", direction_record(ba_)}};
}

std::vector<int> Relay::fds() const
{
	std::vector<int> out = {a_.get(), b_.get()};
	for (const Direction *d : {&ab_, &ba_})
		if (d->pipe) {
			out.push_back(d->pipe->read_end.get());
			out.push_back(d->pipe->write_end.get());
		}
	return out;
}

std::unique_ptr<Relay> Relay::restore(RelayContext &ctx, const nlohmann::json &r, std::vector<UniqueFd> fds,
				      std::string &error)
{
	try {
		bool ab_pipe = r.at("a_to_b").at("pipe").get<bool>();
		bool ba_pipe = r.at("b_to_a").at("pipe").get<bool>();
		std::size_t want = 2 + (ab_pipe ? 2 : 0) + (ba_pipe ? 2 : 0);
		if (fds.size() != want) {
			error = "relay record wants " + std::to_string(want) + " fds, got " + std::to_string(fds.size());
			return nullptr;
		}
		auto relay = std::make_unique<Relay>(ctx, std::move(fds[0]), std::move(fds[1]));
		relay->task = r.at("task").get<std::string>();
		relay->client = service::ClientRef::from_json(r.at("client"));
		relay->request_id = r.at("request_id").get<std::string>();
		relay->metadata = r.at("metadata").get<std::string>();
		relay->idle_timeout_ms = r.at("idle_timeout_ms").get<std::uint64_t>();
		relay->started_ms = r.at("started_ms").get<std::int64_t>();
		relay->last_activity_ = std::chrono::steady_clock::now() -
					std::chrono::milliseconds(r.at("idle_ms").get<std::int64_t>());
		restore_direction(relay->ab_, r.at("a_to_b"));
		restore_direction(relay->ba_, r.at("b_to_a"));
		std::size_t next = 2;
		for (auto [d, has] : {std::pair{&relay->ab_, ab_pipe}, std::pair{&relay->ba_, ba_pipe}}) {
			if (!has)
				continue;
			d->pipe = Pipe{std::move(fds[next]), std::move(fds[next + 1])};
			next += 2;
			ctx.pool->adopt();
		}
		return relay;
	} catch (const nlohmann::json::exception &e) {
		error = std::string("malformed relay record: ") + e.what();
		return nullptr;
	}
}

} // namespace shoal::splicer
