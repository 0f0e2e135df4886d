// Proxy: accept → connect upstream → splice [client, upstream] to splicer → forget; audit each done.
#include "proxy.h"

#include <cerrno>

#include <shoal/proto/address.h>
#include <shoal/service/log.h>

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

Proxy::Proxy(uv_loop_t *loop, ProxyConfig config)
	: loop_(loop), cfg_(std::move(config)), grace_timer_(new uv_timer_t)
{
	uv_timer_init(loop_, grace_timer_);
	grace_timer_->data = this;
	outage_started_ms_ = uv_now(loop_);
}

Proxy::~Proxy()
{
	listeners_.clear();
	connecting_.clear();
	splicer_.reset();
	uv_close(reinterpret_cast<uv_handle_t *>(grace_timer_), free_timer);
}

std::optional<std::string> Proxy::start()
{
	auto audit = Audit::open(cfg_.audit_log, cfg_.owner);
	if (!audit)
		return "cannot open audit log " + cfg_.audit_log.value_or("") + ": " +
		       service::errno_name(audit.error());
	audit_ = std::move(*audit);

	for (const Endpoint &e : cfg_.listen) {
		auto l = Listener::open(loop_, e.addr, static_cast<int>(cfg_.listen_backlog),
					[this](UniqueFd client, const sockaddr_storage &peer) {
						on_accept(std::move(client), peer);
					});
		if (!l)
			return "cannot listen on " + e.text + ": " + service::errno_name(l.error());
		log()->info("listening on {}", (*l)->local());
		listeners_.push_back(std::move(*l));
	}

	SplicerSettings s;
	s.socket_path = cfg_.splicer_socket;
	s.owner = cfg_.owner;
	s.idle_timeout_ms = cfg_.idle_timeout_ms;
	s.reconnect_min_ms = cfg_.reconnect_min_ms;
	s.reconnect_max_ms = cfg_.reconnect_max_ms;
	s.hello_timeout_ms = cfg_.hello_timeout_ms;
	SplicerClient::Handlers h;
	h.on_ready = [this](std::uint64_t mailbox) { on_splicer_ready(mailbox); };
	h.on_down = [this](int error, std::uint64_t retry_ms, bool was_ready) {
		on_splicer_down(error, retry_ms, was_ready);
	};
	h.on_done = [this](proto::Done done, std::vector<UniqueFd> fds) {
		on_done(std::move(done), std::move(fds));
	};
	splicer_ = std::make_unique<SplicerClient>(loop_, std::move(s), std::move(h));
	log()->info("upstream {}; splicer {}; owner {}", cfg_.upstream.text, cfg_.splicer_socket,
		    cfg_.owner);
	splicer_->start();
	return std::nullopt;
}

std::size_t Proxy::pending() const
{
	return connecting_.size() + (splicer_ ? splicer_->awaiting() : 0);
}

void Proxy::on_accept(UniqueFd client, const sockaddr_storage &peer)
{
	clients_++;
	std::string client_text = proto::format_endpoint(peer);
	if (stopping_)
		return;
	/* Refused, not held: a client waiting on a dead splicer would only time out later. */
	if (!splicer_->ready()) {
		refuse_unreachable(client_text);
		return;
	}
	if (pending() >= cfg_.max_pending_connects) {
		if (full_log_.allow(loop_))
			log()->warn("{} clients pending (limits.max_pending_connects): closing {}{}",
				    pending(), client_text, suppressed_note(full_log_.take_suppressed()));
		return;
	}
	std::uint64_t n = ++next_conn_;
	auto c = Connector::start(loop_, cfg_.upstream.addr, cfg_.connect_timeout_ms,
				  [this, n](Result<UniqueFd> up) {
					  on_upstream(n, std::move(up));
				  });
	if (!c) {
		if (upstream_log_.allow(loop_))
			log()->warn("cannot connect to upstream {} for {}: {}; closed it{}",
				    cfg_.upstream.text, client_text, service::errno_name(c.error()),
				    suppressed_note(upstream_log_.take_suppressed()));
		return;
	}
	Connecting conn;
	conn.client = std::move(client);
	conn.client_text = std::move(client_text);
	conn.accepted_at_ms = wall_ms();
	conn.connector = std::move(*c);
	connecting_.emplace(n, std::move(conn));
}

void Proxy::on_upstream(std::uint64_t n, Result<UniqueFd> upstream)
{
	hand_over(n, std::move(upstream));
	maybe_finish_stop();
}

void Proxy::hand_over(std::uint64_t n, Result<UniqueFd> upstream)
{
	auto node = connecting_.extract(n);
	if (node.empty())
		return;
	/* Destroying the connector from inside its own callback is allowed (upstream.h). */
	Connecting conn = std::move(node.mapped());
	if (!upstream) {
		if (upstream_log_.allow(loop_))
			log()->warn("upstream {} for {}: {}; closed the client{}", cfg_.upstream.text,
				    conn.client_text, service::errno_name(upstream.error()),
				    suppressed_note(upstream_log_.take_suppressed()));
		return;
	}
	/* Also while stopping: a client accepted before SIGTERM is still handed over. */
	if (!splicer_->ready()) {
		refuse_unreachable(conn.client_text);
		return;
	}
	nlohmann::json metadata = {
		{"client", conn.client_text},
		{"upstream", cfg_.upstream.text},
		{"accepted_at_ms", conn.accepted_at_ms},
	};
	std::string client_text = conn.client_text;
	int err = splicer_->splice(std::move(metadata), std::move(conn.client), std::move(*upstream),
				   [this, client_text](const SpliceOutcome &o) {
					   on_splice_outcome(client_text, o);
				   });
	if (err && refused_log_.allow(loop_))
		log()->warn("cannot hand {} to splicer: {}; closed it{}", client_text,
			    service::errno_name(err), suppressed_note(refused_log_.take_suppressed()));
}

void Proxy::on_splice_outcome(const std::string &client, const SpliceOutcome &o)
{
	switch (o.kind) {
	case SpliceOutcome::Kind::accepted:
		spliced_++;
		log()->debug("{} <-> {}: relayed by splicer as task {}", client, cfg_.upstream.text, o.task);
		break;
	case SpliceOutcome::Kind::refused:
		if (refused_log_.allow(loop_))
			log()->warn("splicer refused {}: {}: {}; closed it{}", client,
				    proto::to_string(o.error.code), o.error.message,
				    suppressed_note(refused_log_.take_suppressed()));
		break;
	case SpliceOutcome::Kind::lost:
		if (lost_log_.allow(loop_))
			log()->warn("no answer from splicer for {} ({}); closed our copies: the relay "
				    "goes on only if splicer had accepted it{}",
				    client, service::errno_name(o.lost_error),
				    suppressed_note(lost_log_.take_suppressed()));
		break;
	}
	maybe_finish_stop();
}

void Proxy::maybe_finish_stop()
{
	if (stopping_ && !stopped_ && pending() == 0)
		finish_stop();
}

void Proxy::refuse_unreachable(const std::string &client)
{
	refused_in_outage_++;
	if (refusal_logged_)
		return;
	refusal_logged_ = true;
	log()->warn("refusing clients while splicer is unreachable (first: {}); this outage's "
		    "refusals are counted, not logged",
		    client);
}

void Proxy::on_splicer_ready(std::uint64_t mailbox)
{
	std::uint64_t down_ms = uv_now(loop_) - outage_started_ms_;
	log()->info("connected to splicer at {} as {}; {} result(s) waiting", cfg_.splicer_socket,
		    cfg_.owner, mailbox);
	if (refused_in_outage_)
		log()->info("splicer was unreachable for {} ms; {} client(s) refused meanwhile", down_ms,
			    refused_in_outage_);
	outage_logged_ = refusal_logged_ = false;
	refused_in_outage_ = 0;
}

void Proxy::on_splicer_down(int error, std::uint64_t retry_ms, bool was_ready)
{
	if (was_ready) {
		outage_started_ms_ = uv_now(loop_);
		outage_logged_ = true;
		log()->warn("lost splicer at {} ({}); refusing new clients until it is back, "
			    "reconnecting in {} ms",
			    cfg_.splicer_socket, service::errno_name(error), retry_ms);
		return;
	}
	if (!outage_logged_) {
		outage_logged_ = true;
		log()->warn("cannot reach splicer at {} ({}); refusing new clients until it is back, "
			    "retrying (at most every {} ms)",
			    cfg_.splicer_socket, service::errno_name(error), cfg_.reconnect_max_ms);
		return;
	}
	log()->debug("splicer still unreachable ({}); next try in {} ms", service::errno_name(error),
		     retry_ms);
}

void Proxy::on_done(proto::Done done, std::vector<UniqueFd> fds)
{
	done_++;
	audit_->record(done, fds);
	/* fds close here: the relay is over and the proxy was its last owner. */
}

void Proxy::reopen_audit()
{
	if (audit_)
		audit_->reopen();
}

void Proxy::stop(std::function<void()> on_stopped)
{
	if (stopped_)
		return;
	if (stopping_) {
		log()->info("stopping now, without waiting for splicer's answers");
		finish_stop();
		return;
	}
	stopping_ = true;
	on_stopped_ = std::move(on_stopped);
	log()->info("stopping: no longer accepting; {} client(s) seen, {} handed to splicer, {} "
		    "relay(s) audited; accepted relays go on in splicer",
		    clients_, spliced_, done_);
	for (auto &l : listeners_)
		l->close();
	listeners_.clear();
	/* Clients already accepted are still handed over, for up to shutdown_grace_ms. */
	if (pending() == 0) {
		finish_stop();
		return;
	}
	uv_timer_start(grace_timer_, grace_cb, cfg_.shutdown_grace_ms, 0);
}

void Proxy::grace_cb(uv_timer_t *timer)
{
	auto *self = static_cast<Proxy *>(timer->data);
	guarded("shutdown", [&] {
		log()->warn("{} client(s) not handed over within {} ms; closing them", self->pending(),
			    self->cfg_.shutdown_grace_ms);
		self->finish_stop();
	});
}

void Proxy::finish_stop()
{
	if (stopped_)
		return;
	stopped_ = true;
	uv_timer_stop(grace_timer_);
	connecting_.clear(); /* still connecting upstream after the grace period: closed */
	if (splicer_)
		splicer_->stop();
	if (auto cb = std::move(on_stopped_))
		cb();
}

} // namespace shoal::proxy
