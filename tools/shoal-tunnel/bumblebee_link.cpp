// BumblebeeLink: libfdpass Channel to bumblebee's SOCK_SEQPACKET socket, hello/welcome, backoff, a bounded backlog.
#include "bumblebee_link.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <shoal/fdpass/message.h>
#include <shoal/proto/messages.h>

#include "log.h"
#include "uv_util.h"

namespace shoal::tunnel {

BumblebeeLink::BumblebeeLink(uv_loop_t *loop, LinkSettings settings, Handlers handlers)
	: loop_(loop), settings_(std::move(settings)), handlers_(std::move(handlers)),
	  retry_timer_(new uv_timer_t), hello_timer_(new uv_timer_t), flush_timer_(new uv_timer_t),
	  backoff_ms_(settings_.reconnect_min_ms)
{
	for (uv_timer_t *t : {retry_timer_, hello_timer_, flush_timer_}) {
		uv_timer_init(loop_, t);
		t->data = this;
	}
}

BumblebeeLink::~BumblebeeLink()
{
	state_ = State::stopped;
	channel_.reset();
	close_and_delete(retry_timer_);
	close_and_delete(hello_timer_);
	close_and_delete(flush_timer_);
}

void BumblebeeLink::start()
{
	if (state_ == State::idle)
		try_connect();
}

void BumblebeeLink::try_connect()
{
	UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!sock.is_valid()) {
		schedule_retry(errno, false);
		return;
	}
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (settings_.socket_path.size() >= sizeof addr.sun_path) {
		schedule_retry(ENAMETOOLONG, false);
		return;
	}
	std::memcpy(addr.sun_path, settings_.socket_path.data(), settings_.socket_path.size());
	int r;
	do
		r = ::connect(sock.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr);
	while (r < 0 && errno == EINTR);
	/* A Unix connect completes at once or fails (EAGAIN: the backlog is full; retry). */
	if (r < 0) {
		schedule_retry(errno, false);
		return;
	}
	/* Results come back in bursts (a mailbox, 2000 flows ending): a roomy queue either way. */
	ChannelLimits limits;
	limits.queue_bytes = 4 * 1024 * 1024;
	limits.queue_fds = 1024;
	limits.batch = 64;
	auto ch = Channel::open(loop_, std::move(sock), limits);
	if (!ch) {
		schedule_retry(ch.error(), false);
		return;
	}
	channel_ = std::move(*ch);
	state_ = State::hello;
	channel_->start(
		[this](ReceivedMessage m) { guarded("bumblebee message", [&] { on_datagram(std::move(m)); }); },
		[this](int error, std::deque<OutMessage> unsent) {
			guarded("bumblebee connection", [&] {
				/* What never left goes out again after the next welcome, in order. */
				for (auto it = unsent.rbegin(); it != unsent.rend(); ++it)
					if (it->data != hello_data_)
						backlog_.push_front(std::move(*it));
				lost(error);
			});
		});
	hello_id_ = std::to_string(::getpid()) + "-hello" + std::to_string(++hellos_);
	OutMessage hello;
	hello.data = proto::encode(hello_id_, proto::Hello{settings_.owner});
	hello_data_ = hello.data;
	/* A refusal here means the socket broke; the channel reports that from the loop. */
	(void)channel_->send(std::move(hello));
	uv_timer_start(hello_timer_, [](uv_timer_t *t) {
		auto *self = static_cast<BumblebeeLink *>(t->data);
		guarded("bumblebee hello timeout", [&] {
			if (self->state_ != State::hello)
				return;
			log(LogLevel::warn, "bumblebee did not answer hello within %llu ms; reconnecting",
			    static_cast<unsigned long long>(self->settings_.hello_timeout_ms));
			self->lost(ETIMEDOUT);
		});
	}, settings_.hello_timeout_ms, 0);
}

void BumblebeeLink::lost(int error)
{
	bool was_ready = state_ == State::ready;
	/* Destroying the channel from its own handler is allowed (channel.h). */
	channel_.reset();
	uv_timer_stop(hello_timer_);
	uv_timer_stop(flush_timer_);
	if (state_ != State::stopped)
		schedule_retry(error, was_ready);
}

void BumblebeeLink::schedule_retry(int error, bool was_ready)
{
	if (state_ == State::stopped)
		return;
	state_ = State::backoff;
	std::uint64_t delay = backoff_ms_;
	backoff_ms_ = std::min(backoff_ms_ * 2, settings_.reconnect_max_ms);
	uv_timer_start(retry_timer_, [](uv_timer_t *t) {
		auto *self = static_cast<BumblebeeLink *>(t->data);
		guarded("bumblebee reconnect", [&] {
			if (self->state_ == State::backoff)
				self->try_connect();
		});
	}, delay, 0);
	if (handlers_.on_down)
		handlers_.on_down(error, was_ready);
}

bool BumblebeeLink::send(OutMessage message)
{
	if (state_ == State::stopped)
		return false;
	if (state_ == State::ready && backlog_.empty() && channel_) {
		auto r = channel_->send(std::move(message));
		if (r)
			return true;
		if (r.error().error != ENOBUFS && r.error().error != EPIPE) {
			log(LogLevel::error, "a request to bumblebee cannot be sent: %s", errno_text(r.error().error).c_str());
			return false;
		}
		message = std::move(r.error().message);
	}
	if (backlog_.size() >= settings_.max_backlog)
		return false;
	backlog_.push_back(std::move(message));
	if (state_ == State::ready && !uv_is_active(reinterpret_cast<uv_handle_t *>(flush_timer_)))
		uv_timer_start(flush_timer_, [](uv_timer_t *t) {
			auto *self = static_cast<BumblebeeLink *>(t->data);
			guarded("bumblebee backlog", [&] { self->flush(); });
		}, 5, 0);
	return true;
}

void BumblebeeLink::flush()
{
	while (state_ == State::ready && channel_ && !backlog_.empty()) {
		auto r = channel_->send(std::move(backlog_.front()));
		backlog_.pop_front();
		if (r)
			continue;
		int err = r.error().error;
		if (err == ENOBUFS || err == EPIPE) {
			backlog_.push_front(std::move(r.error().message));
			/* ENOBUFS: bumblebee is slow to read; EPIPE: the loss is reported from the loop. */
			if (err == ENOBUFS)
				uv_timer_start(flush_timer_, [](uv_timer_t *t) {
					auto *self = static_cast<BumblebeeLink *>(t->data);
					guarded("bumblebee backlog", [&] { self->flush(); });
				}, 5, 0);
			return;
		}
		log(LogLevel::error, "a request to bumblebee cannot be sent: %s", errno_text(err).c_str());
	}
}

void BumblebeeLink::on_datagram(ReceivedMessage msg)
{
	if (msg.error) {
		log(LogLevel::warn, "bumblebee sent an unreadable message (%s); ignored", errno_text(msg.error).c_str());
		return; /* its fds close with msg */
	}
	auto rep = proto::parse_reply(msg.data, msg.fds.size());
	if (!rep) {
		log(LogLevel::warn, "bumblebee sent a malformed message (%s); ignored", rep.error().message.c_str());
		return;
	}
	if (rep->op == proto::ops::welcome) {
		auto w = proto::decode_welcome(*rep);
		if (!w || state_ != State::hello) {
			if (!w)
				log(LogLevel::warn, "bumblebee sent a bad welcome (%s)", w.error().message.c_str());
			return;
		}
		state_ = State::ready;
		backoff_ms_ = settings_.reconnect_min_ms;
		refusal_logged_ = false;
		uv_timer_stop(hello_timer_);
		if (handlers_.on_ready)
			handlers_.on_ready(w->mailbox);
		flush();
		return;
	}
	if (rep->op == proto::ops::error && state_ == State::hello && rep->id == hello_id_) {
		auto e = proto::decode_error_reply(*rep);
		if (!refusal_logged_)
			log(LogLevel::error, "bumblebee refused hello as %s: %s", settings_.owner.c_str(),
			    e ? e->message.c_str() : "(undecodable error)");
		refusal_logged_ = true;
		lost(EPROTO);
		return;
	}
	if (handlers_.on_message)
		handlers_.on_message(std::move(*rep), std::move(msg.fds));
}

void BumblebeeLink::stop()
{
	if (state_ == State::stopped)
		return;
	/* Results already written to this connection would close unread with it: take them first. */
	for (int i = 0; i < 100000 && channel_ && channel_->fd() >= 0 && state_ != State::stopped; i++) {
		auto r = recv_message(channel_->fd());
		if (!r)
			break;
		on_datagram(std::move(*r));
	}
	state_ = State::stopped;
	channel_.reset();
	uv_timer_stop(retry_timer_);
	uv_timer_stop(hello_timer_);
	uv_timer_stop(flush_timer_);
	backlog_.clear();
}

} // namespace shoal::tunnel
