// SplicerClient: a libfdpass Channel to splicer's SOCK_SEQPACKET socket, strict decoding of what comes back.
#include "splicer_client.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <shoal/fdpass/message.h>
#include <shoal/proto/envelope.h>
#include <shoal/service/log.h>

#include "util.h"

namespace shoal::proxy {

namespace {

auto log()
{
	return service::logger("proxy");
}

void free_timer(uv_handle_t *handle)
{
	delete reinterpret_cast<uv_timer_t *>(handle);
}

} // namespace

SplicerClient::SplicerClient(uv_loop_t *loop, SplicerSettings settings, Handlers handlers)
	: loop_(loop), settings_(std::move(settings)), handlers_(std::move(handlers)),
	  retry_timer_(new uv_timer_t), hello_timer_(new uv_timer_t),
	  backoff_ms_(settings_.reconnect_min_ms)
{
	uv_timer_init(loop_, retry_timer_);
	uv_timer_init(loop_, hello_timer_);
	retry_timer_->data = this;
	hello_timer_->data = this;
}

SplicerClient::~SplicerClient()
{
	stop();
	uv_close(reinterpret_cast<uv_handle_t *>(retry_timer_), free_timer);
	uv_close(reinterpret_cast<uv_handle_t *>(hello_timer_), free_timer);
}

void SplicerClient::start()
{
	if (state_ == State::idle)
		try_connect();
}

std::string SplicerClient::next_id(const char *prefix)
{
	/* The pid tells a predecessor's ids (they come back in its relays' done events) from ours. */
	return std::to_string(::getpid()) + "-" + prefix + std::to_string(++counter_);
}

void SplicerClient::try_connect()
{
	UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!sock.is_valid()) {
		schedule_retry(errno, false);
		return;
	}
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::memcpy(addr.sun_path, settings_.socket_path.data(),
		    std::min(settings_.socket_path.size(), sizeof addr.sun_path - 1));
	int r;
	do
		r = ::connect(sock.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr);
	while (r < 0 && errno == EINTR);
	/* A Unix connect completes at once or fails (EAGAIN: splicer's backlog is full; retry). */
	if (r < 0) {
		schedule_retry(errno, false);
		return;
	}
	auto ch = Channel::open(loop_, std::move(sock));
	if (!ch) {
		schedule_retry(ch.error(), false);
		return;
	}
	channel_ = std::move(*ch);
	state_ = State::hello;
	channel_->start(
		[this](ReceivedMessage m) { guarded("splicer message", [&] { on_message(std::move(m)); }); },
		[this](int error, std::deque<OutMessage>) {
			guarded("splicer connection", [&] { connection_lost(error); });
		});
	hello_id_ = next_id("hello");
	OutMessage hello;
	hello.data = proto::encode(hello_id_, proto::Hello{settings_.owner});
	/* A refusal here means the socket broke; the channel reports that from the loop. */
	(void)channel_->send(std::move(hello));
	uv_timer_start(hello_timer_, hello_timeout_cb, settings_.hello_timeout_ms, 0);
	log()->debug("saying hello to splicer at {} as {}", settings_.socket_path, settings_.owner);
}

void SplicerClient::connection_lost(int error)
{
	bool was_ready = state_ == State::ready;
	/* Destroying the channel from its own handler is allowed (channel.h). */
	channel_.reset();
	uv_timer_stop(hello_timer_);
	fail_awaiting(error);
	if (state_ != State::stopped)
		schedule_retry(error, was_ready);
}

void SplicerClient::schedule_retry(int error, bool was_ready)
{
	if (state_ == State::stopped)
		return;
	state_ = State::backoff;
	std::uint64_t delay = backoff_ms_;
	backoff_ms_ = std::min(backoff_ms_ * 2, settings_.reconnect_max_ms);
	uv_timer_start(retry_timer_, retry_cb, delay, 0);
	if (handlers_.on_down)
		handlers_.on_down(error, delay, was_ready);
}

void SplicerClient::retry_cb(uv_timer_t *timer)
{
	auto *self = static_cast<SplicerClient *>(timer->data);
	guarded("splicer reconnect", [&] {
		if (self->state_ == State::backoff)
			self->try_connect();
	});
}

void SplicerClient::hello_timeout_cb(uv_timer_t *timer)
{
	auto *self = static_cast<SplicerClient *>(timer->data);
	guarded("splicer hello timeout", [&] {
		if (self->state_ != State::hello)
			return;
		log()->warn("splicer at {} did not answer hello within {} ms; reconnecting",
			    self->settings_.socket_path, self->settings_.hello_timeout_ms);
		self->connection_lost(ETIMEDOUT);
	});
}

void SplicerClient::fail_awaiting(int error)
{
	auto awaiting = std::move(awaiting_);
	awaiting_.clear();
	for (auto &[id, a] : awaiting) {
		SpliceOutcome o;
		o.kind = SpliceOutcome::Kind::lost;
		o.lost_error = error;
		if (a.on_outcome)
			a.on_outcome(o);
	}
	/* Our copies close here; if splicer had accepted, its own copies carry on. */
}

void SplicerClient::on_message(ReceivedMessage msg)
{
	if (msg.error) {
		log()->warn("splicer sent an unreadable message ({}); ignored",
			    service::errno_name(msg.error));
		return; /* any fds it carried close with msg */
	}
	auto rep = proto::parse_reply(msg.data, msg.fds.size());
	if (!rep) {
		log()->warn("splicer sent a malformed message ({}); ignored", rep.error().message);
		return;
	}
	handle_reply(std::move(*rep), std::move(msg.fds));
}

void SplicerClient::handle_reply(proto::Reply rep, std::vector<UniqueFd> fds)
{
	namespace ops = proto::ops;
	const std::string id = rep.id.value_or("");

	if (rep.op == ops::welcome) {
		auto w = proto::decode_welcome(rep);
		if (!w) {
			log()->warn("splicer sent a bad welcome ({})", w.error().message);
			if (state_ == State::hello)
				connection_lost(EPROTO);
			return;
		}
		if (state_ != State::hello)
			return;
		state_ = State::ready;
		backoff_ms_ = settings_.reconnect_min_ms;
		hello_refusal_logged_ = false;
		uv_timer_stop(hello_timer_);
		if (handlers_.on_ready)
			handlers_.on_ready(w->mailbox);
		return;
	}

	if (rep.op == ops::accepted || rep.op == ops::error) {
		auto it = rep.id ? awaiting_.find(*rep.id) : awaiting_.end();
		SpliceOutcome o;
		if (rep.op == ops::accepted) {
			auto a = proto::decode_accepted(rep);
			if (a) {
				o.kind = SpliceOutcome::Kind::accepted;
				o.task = a->task;
			} else {
				log()->warn("splicer sent a bad accepted ({})", a.error().message);
				o.kind = SpliceOutcome::Kind::lost;
				o.lost_error = EPROTO;
			}
		} else {
			auto e = proto::decode_error_reply(rep);
			o.kind = SpliceOutcome::Kind::refused;
			if (e)
				o.error = *e;
			else
				o.error = {proto::ErrorCode::internal, "(undecodable error: " + e.error().message + ")"};
			if (it == awaiting_.end()) {
				if (state_ == State::hello && rep.id == hello_id_) {
					/* Retrying will likely be refused alike: say so once until a welcome. */
					if (!hello_refusal_logged_)
						log()->error("splicer refused hello as {}: {}: {}", settings_.owner,
							     proto::to_string(o.error.code), o.error.message);
					hello_refusal_logged_ = true;
					connection_lost(EPROTO);
				} else {
					log()->warn("splicer: error {}: {} (id {})", proto::to_string(o.error.code),
						    o.error.message, rep.id ? *rep.id : std::string("null"));
				}
				return;
			}
		}
		if (it == awaiting_.end()) {
			log()->warn("splicer answered {} to a request we did not send (id {})", rep.op, id);
			return;
		}
		Awaiting a = std::move(it->second);
		awaiting_.erase(it);
		if (a.on_outcome)
			a.on_outcome(o);
		return; /* a.a and a.b close here: on success splicer holds the relay */
	}

	if (rep.op == ops::done) {
		auto d = proto::decode_done(rep);
		if (!d) {
			log()->warn("splicer sent a bad done ({}); its sockets are closed",
				    d.error().message);
			return;
		}
		if (handlers_.on_done)
			handlers_.on_done(std::move(*d), std::move(fds));
		return;
	}

	if (rep.op == ops::cancelling) {
		log()->debug("splicer: cancelling (id {})", id);
		return;
	}
	log()->warn("splicer sent an unexpected {} (id {}); ignored", rep.op, id);
}

int SplicerClient::splice(nlohmann::json metadata, UniqueFd a, UniqueFd b, SpliceCallback on_outcome)
{
	if (state_ != State::ready || !channel_)
		return ENOTCONN;
	std::string id = next_id("s");
	OutMessage m;
	m.data = proto::encode(id, proto::Splice{std::move(metadata), settings_.idle_timeout_ms});
	/* The channel closes what it sends; we keep the originals until the reply. */
	UniqueFd da = a.dup(), db = b.dup();
	if (!da.is_valid() || !db.is_valid())
		return errno ? errno : EMFILE;
	m.fds.push_back(std::move(da));
	m.fds.push_back(std::move(db));
	auto sent = channel_->send(std::move(m));
	if (!sent)
		return sent.error().error; /* EPIPE: the loss is reported from the loop */
	awaiting_.emplace(std::move(id), Awaiting{std::move(a), std::move(b), std::move(on_outcome)});
	return 0;
}

void SplicerClient::stop()
{
	if (state_ == State::stopped)
		return;
	/*
	 * Results splicer already wrote to this connection would die with it (their fds closed
	 * unread), so read them first. What arrives after this is kept in our mailbox instead.
	 */
	if (channel_ && channel_->fd() >= 0) {
		for (int i = 0; i < 10000 && channel_ && channel_->fd() >= 0; i++) {
			auto r = recv_message(channel_->fd());
			if (!r)
				break;
			on_message(std::move(*r));
		}
	}
	state_ = State::stopped;
	channel_.reset();
	uv_timer_stop(retry_timer_);
	uv_timer_stop(hello_timer_);
	fail_awaiting(ESHUTDOWN);
}

} // namespace shoal::proxy
