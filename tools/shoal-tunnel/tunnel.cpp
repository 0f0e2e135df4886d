// Tunnel: glue between tun0's flows, bumblebee's answers and the upstream relays, and PROGRAM's start and end.
#include "tunnel.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <sys/wait.h>
#include <unistd.h>

#include <shoal/proto/address.h>

#include "uv_util.h"

namespace shoal::tunnel {

namespace {

/* bumblebee must welcome us within this long before PROGRAM is given up on. */
constexpr std::uint64_t kStartupTimeoutMs = 5000;
/*
 * After everything is closed, ended events of the last flows may take this long to arrive
 * (counted again from each one that does), but no longer than the cap in all.
 */
constexpr std::uint64_t kClosingGraceMs = 300;
constexpr std::uint64_t kClosingCapMs = 3000;
/* An upgrade bumblebee never answers (it crashed holding it) is given up after its own timeout and this. */
constexpr std::uint64_t kAnswerSlackMs = 10000;
constexpr std::uint64_t kDefaultAnswerMs = 120000;

std::string random_tag()
{
	std::random_device rd;
	char buf[16];
	std::snprintf(buf, sizeof buf, "%04x", static_cast<unsigned>(rd() & 0xffff));
	return buf;
}

std::string describe(const proto::ErrorReply &e)
{
	return std::string(proto::to_string(e.code)) + ": " + e.message;
}

} // namespace

Tunnel::Tunnel(uv_loop_t *loop, const Options &options, NamespaceChild child, Report &report,
	       std::size_t max_flows)
	: loop_(loop), options_(options), child_(std::move(child)), report_(report),
	  counters_(report.counters), max_flows_(max_flows), start_ms_(uv_now(loop))
{
	relay_ctx_.loop = loop_;
}

Tunnel::~Tunnel()
{
	/* Flows (and their relays) go before the device and the link they use. */
	table_.reset();
	link_.reset();
	tun_.reset();
	close_and_delete(sweep_timer_);
	close_and_delete(phase_timer_);
	for (auto *s : signals_)
		close_and_delete(s);
	if (child_.pid > 0 && !child_exited_) {
		/* Only on an unexpected exit path: PROGRAM must not outlive its network. */
		::kill(child_.pid, SIGKILL);
		int status;
		::waitpid(child_.pid, &status, 0);
	}
}

std::uint64_t Tunnel::duration_ms() const
{
	return uv_now(loop_) - start_ms_;
}

int Tunnel::run()
{
	tun_ = std::make_unique<TunDevice>(loop_, std::move(child_.tun), options_.mtu, counters_);
	std::string owner = options_.owner.empty() ? "shoal-tunnel-" + std::to_string(::getpid()) : options_.owner;
	/* Ids name our pid and a random tag: an owner shared across runs must not match old results to new flows. */
	std::string prefix = std::to_string(::getpid()) + "." + random_tag() + ".";

	FlowTable::Handlers th;
	th.on_new_flow = [this](Flow &f) { on_new_flow(f); };
	th.on_socket_closed = [this](Flow &f, int error) { on_socket_closed(f, error); };
	table_ = std::make_unique<FlowTable>(loop_, *tun_, report_, start_ms_, prefix, max_flows_, std::move(th));

	LinkSettings ls;
	ls.socket_path = options_.bumblebee_path;
	ls.owner = owner;
	BumblebeeLink::Handlers lh;
	lh.on_ready = [this](std::uint64_t mailbox) { on_link_ready(mailbox); };
	lh.on_down = [this](int error, bool was_ready) { on_link_down(error, was_ready); };
	lh.on_message = [this](proto::Reply r, std::vector<UniqueFd> fds) { on_message(std::move(r), std::move(fds)); };
	link_ = std::make_unique<BumblebeeLink>(loop_, std::move(ls), std::move(lh));

	if (!tun_->start([this](std::span<PacketSlot> batch) { table_->dispatch(batch); },
			 [this](int error) {
				 TLOG_DEBUG("tun0 closed: %s", errno_text(error).c_str());
			 })) {
		TLOG_ERROR("cannot poll tun0");
		setup_failed_ = true;
	}

	sweep_timer_ = new uv_timer_t;
	uv_timer_init(loop_, sweep_timer_);
	sweep_timer_->data = this;
	uv_timer_start(sweep_timer_, [](uv_timer_t *t) {
		guarded("sweep", [&] { static_cast<Tunnel *>(t->data)->sweep(); });
	}, 1000, 1000);
	phase_timer_ = new uv_timer_t;
	uv_timer_init(loop_, phase_timer_);
	phase_timer_->data = this;

	for (int signum : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
		auto *s = new uv_signal_t;
		uv_signal_init(loop_, s);
		s->data = this;
		uv_signal_start(s, [](uv_signal_t *h, int sig) {
			guarded("signal", [&] { static_cast<Tunnel *>(h->data)->on_signal(sig); });
		}, signum);
		signals_.push_back(s);
	}
	/* The child cannot exit before "go" unless something killed it: look once now that SIGCHLD is watched. */
	reap_child();

	if (setup_failed_ || child_exited_) {
		begin_drain();
	} else {
		link_->start();
		uv_timer_start(phase_timer_, [](uv_timer_t *t) {
			auto *self = static_cast<Tunnel *>(t->data);
			guarded("startup", [&] {
				if (self->phase_ != Phase::starting)
					return;
				TLOG_ERROR("cannot reach bumblebee at %s (%s); not running PROGRAM",
					   self->options_.bumblebee_path.c_str(),
					   self->last_link_error_ ? errno_text(self->last_link_error_).c_str()
								  : "no welcome");
				self->setup_failed_ = true;
				self->begin_drain();
			});
		}, kStartupTimeoutMs, 0);
	}
	uv_run(loop_, UV_RUN_DEFAULT);
	return setup_failed_ ? setup_status_ : exit_status_;
}

/* ---------------- bumblebee ---------------- */

void Tunnel::on_link_ready(std::uint64_t mailbox)
{
	counters_.link_connects++;
	if (phase_ == Phase::starting) {
		uv_timer_stop(phase_timer_);
		phase_ = Phase::running;
		TLOG_DEBUG("bumblebee at %s welcomed us; running %s", options_.bumblebee_path.c_str(),
			   options_.program[0].c_str());
		if (release_child(child_))
			program_started_ = true;
		else
			TLOG_WARN("could not tell the namespace child to start PROGRAM");
		return;
	}
	TLOG_INFO("reconnected to bumblebee (%llu results in the mailbox)", static_cast<unsigned long long>(mailbox));
}

void Tunnel::on_link_down(int error, bool was_ready)
{
	last_link_error_ = error;
	if (was_ready) {
		counters_.link_losses++;
		if (phase_ == Phase::running || phase_ == Phase::draining)
			TLOG_WARN("lost the connection to bumblebee (%s); reconnecting", errno_text(error).c_str());
	} else {
		TLOG_DEBUG("bumblebee at %s: %s", options_.bumblebee_path.c_str(), errno_text(error).c_str());
	}
}

void Tunnel::send_upgrade(Flow &flow)
{
	proto::Upgrade u;
	u.metadata = nlohmann::json{{"flow", flow.record->flow}};
	u.protocol = flow.protocol;
	u.timeout_ms = options_.timeout_ms;
	u.confirm = options_.confirm;
	OutMessage m;
	m.data = proto::encode(flow.id, u);
	/* The channel closes what it sends; our own copy stays until bumblebee answers (PROTOCOL §5). */
	UniqueFd dup = flow.peer.dup();
	if (!dup.is_valid()) {
		fail_flow(flow, "refused", "cannot duplicate the flow socket: " + errno_text(errno), true);
		return;
	}
	m.fds.push_back(std::move(dup));
	if (!link_->send(std::move(m))) {
		counters_.flows_busy++;
		fail_flow(flow, "refused", "too many upgrades waiting for bumblebee", true);
		return;
	}
	flow.sent = true;
	flow.record->expect_ended = true;
	counters_.upgrades_sent++;
	std::uint64_t wait = options_.timeout_ms ? *options_.timeout_ms + kAnswerSlackMs : kDefaultAnswerMs;
	if (options_.confirm)
		wait += options_.connect_timeout_ms;
	flow.deadline_ms = uv_now(loop_) + wait;
	TLOG_DEBUG("%s %s: upgrade %s", flow.record->protocol.c_str(), flow.record->flow.c_str(), flow.id.c_str());
}

void Tunnel::send_confirm(Flow &flow, bool accept)
{
	OutMessage m;
	m.data = proto::encode("confirm:" + flow.id, proto::Confirm{flow.task, accept});
	flow.record->confirmed = accept;
	(accept ? counters_.confirms_accepted : counters_.confirms_refused)++;
	if (!link_->send(std::move(m)))
		TLOG_WARN("%s: the confirm could not be queued; bumblebee will time the flow out", flow.record->flow.c_str());
}

void Tunnel::on_message(proto::Reply reply, std::vector<UniqueFd> fds)
{
	namespace ops = proto::ops;
	if (reply.op == ops::upgraded)
		on_upgraded(reply, std::move(fds));
	else if (reply.op == ops::syn)
		on_syn(reply);
	else if (reply.op == ops::ended)
		on_ended(reply);
	else if (reply.op == ops::error)
		on_error_reply(reply);
	else if (reply.op == ops::confirmed)
		TLOG_DEBUG("confirmed (id %s)", reply.id.value_or("null").c_str());
	else {
		counters_.protocol_errors++;
		TLOG_WARN("bumblebee sent an unexpected %s; ignored", reply.op.c_str());
	}
	/* fds of anything not taken above close here. */
}

void Tunnel::on_upgraded(const proto::Reply &reply, std::vector<UniqueFd> fds)
{
	auto up = proto::decode_upgraded(reply);
	if (!up) {
		counters_.protocol_errors++;
		TLOG_WARN("bumblebee sent a bad upgraded (%s); its socket is closed", up.error().message.c_str());
		return;
	}
	Flow *flow = reply.id ? table_->find(*reply.id) : nullptr;
	if (!flow || flow->answered) {
		/* We gave up on it already (or never sent it): PROGRAM's side is gone, so is this socket. */
		counters_.results_unmatched++;
		TLOG_DEBUG("upgraded for no waiting flow (id %s); closed", reply.id.value_or("null").c_str());
		return;
	}
	counters_.upgraded++;
	flow->answered = true;
	flow->peer.reset();
	flow->task = up->task;
	flow->record->task = up->task;
	flow->record->upgraded = true;
	UniqueFd sock = std::move(fds.at(0));
	TLOG_DEBUG("%s: upgraded, task %s", flow->record->flow.c_str(), up->task.c_str());
	if (phase_ == Phase::closing || phase_ == Phase::done) {
		maybe_erase(*flow);
		return;
	}
	if (flow->upstream.is_valid()) {
		/* --confirm: the upstream was connected before we accepted. */
		start_relay(*flow, std::move(sock), std::move(flow->upstream));
		return;
	}
	flow->upgraded = std::move(sock);
	connect_upstream(*flow, &up->flow, false);
}

void Tunnel::on_syn(const proto::Reply &reply)
{
	auto syn = proto::decode_syn(reply);
	if (!syn) {
		counters_.protocol_errors++;
		TLOG_WARN("bumblebee sent a bad syn (%s)", syn.error().message.c_str());
		return;
	}
	counters_.syn_events++;
	Flow *flow = reply.id ? table_->find(*reply.id) : nullptr;
	if (!flow || flow->answered || flow->syn_seen) {
		counters_.results_unmatched++;
		return;
	}
	flow->syn_seen = true;
	flow->task = syn->task;
	flow->record->task = syn->task;
	TLOG_DEBUG("%s: syn, task %s", flow->record->flow.c_str(), syn->task.c_str());
	if (phase_ == Phase::closing || phase_ == Phase::done) {
		send_confirm(*flow, false);
		return;
	}
	connect_upstream(*flow, &syn->flow, true);
}

void Tunnel::on_ended(const proto::Reply &reply)
{
	auto ended = proto::decode_ended(reply);
	if (!ended) {
		counters_.protocol_errors++;
		TLOG_WARN("bumblebee sent a bad ended (%s)", ended.error().message.c_str());
		return;
	}
	counters_.ended++;
	auto rit = reply.id ? records_.find(*reply.id) : records_.end();
	if (rit == records_.end()) {
		counters_.results_unmatched++;
		return;
	}
	FlowRecord &rec = *rit->second;
	if (rec.ended)
		return;
	rec.ended = true;
	rec.reason = std::string(proto::to_string(ended->reason));
	if (ended->error && rec.error.empty())
		rec.error = "bumblebee: " + *ended->error;
	if (rec.task.empty())
		rec.task = ended->task;
	rec.bytes_in = ended->bytes_in;
	rec.bytes_out = ended->bytes_out;
	rec.packets_in = ended->packets_in;
	rec.packets_out = ended->packets_out;
	rec.duration_ms = ended->duration_ms;
	if (rec.expect_ended) {
		rec.expect_ended = false;
		if (phase_ == Phase::closing && awaiting_ended_ > 0) {
			if (--awaiting_ended_ == 0) {
				finish();
				return;
			}
			/* Still arriving: grant another grace period, within the overall cap. */
			std::uint64_t now = uv_now(loop_);
			if (now < closing_deadline_ms_)
				uv_timer_start(phase_timer_, closing_timer_cb, std::min(kClosingGraceMs, closing_deadline_ms_ - now), 0);
		}
	}
	TLOG_DEBUG("%s: ended, %s", rec.flow.c_str(), rec.reason.c_str());

	Flow *flow = table_->find(*reply.id);
	if (!flow)
		return;
	if (!flow->answered) {
		/* ended as the answer (timeout, rejected, eof before upgrade): no socket comes. */
		flow->answered = true;
		flow->peer.reset();
		flow->upstream.reset();
	}
	if (flow->protocol == proto::FlowProtocol::udp && flow->relay) {
		/* A UDP flow's end is bumblebee's call (idle): its relay has nothing left to carry. */
		take_relay_counts(*flow);
		flow->relay.reset();
	}
	maybe_erase(*flow);
}

void Tunnel::on_error_reply(const proto::Reply &reply)
{
	auto e = proto::decode_error_reply(reply);
	proto::ErrorReply err = e ? *e : proto::ErrorReply{proto::ErrorCode::internal, "(undecodable error)"};
	const std::string id = reply.id.value_or("");
	if (id.rfind("confirm:", 0) == 0) {
		Flow *flow = table_->find(id.substr(8));
		TLOG_WARN("bumblebee refused a confirm (%s)", describe(err).c_str());
		if (flow && flow->record->error.empty())
			flow->record->error = "confirm: " + describe(err);
		return;
	}
	Flow *flow = reply.id ? table_->find(id) : nullptr;
	if (!flow || flow->answered) {
		counters_.results_unmatched++;
		TLOG_WARN("bumblebee: error %s (id %s)", describe(err).c_str(), reply.id.value_or("null").c_str());
		return;
	}
	counters_.upgrade_errors++;
	flow->record->expect_ended = false;
	TLOG_WARN("%s: upgrade refused: %s", flow->record->flow.c_str(), describe(err).c_str());
	/* Refused, not lost: PROGRAM hears at once (RST / ICMP) instead of retrying into silence. */
	fail_flow(*flow, "refused", "upgrade: " + describe(err), true);
}

/* ---------------- packets ---------------- */

void Tunnel::on_new_flow(Flow &flow)
{
	records_[flow.id] = flow.record;
	flow.deadline_ms = uv_now(loop_) + kDefaultAnswerMs;
	if (phase_ == Phase::closing || phase_ == Phase::done || setup_failed_) {
		fail_flow(flow, "refused", "shoal-tunnel is shutting down", true);
		return;
	}
	TLOG_DEBUG("new %s flow %s", flow.record->protocol.c_str(), flow.record->flow.c_str());
	send_upgrade(flow);
}

void Tunnel::on_socket_closed(Flow &flow, int error)
{
	if (error && flow.record->error.empty())
		flow.record->error = "flow socket: " + errno_text(error);
	if (flow.protocol == proto::FlowProtocol::udp && flow.relay) {
		take_relay_counts(flow);
		flow.relay.reset();
	}
	/* Not answered yet: bumblebee closed after reading it; its answer (ended or error) is on the way. */
	maybe_erase(flow);
}

/* ---------------- upstream ---------------- */

bool Tunnel::upstream_address(const Flow &flow, const proto::Flow *announced, sockaddr_storage &to)
{
	if (options_.connect_to) {
		to = *options_.connect_to;
		return true;
	}
	if (announced) {
		if (auto ep = proto::parse_endpoint(announced->dst)) {
			to = *ep;
			return true;
		}
	}
	std::memset(&to, 0, sizeof to);
	return flow.key.dst.to_sockaddr(to) > 0;
}

void Tunnel::connect_upstream(Flow &flow, const proto::Flow *announced, bool for_confirm)
{
	sockaddr_storage to;
	if (!upstream_address(flow, announced, to)) {
		on_upstream(flow, EAFNOSUPPORT, {}, for_confirm);
		return;
	}
	flow.record->upstream = proto::format_endpoint(to);
	if (flow.protocol == proto::FlowProtocol::udp) {
		int err = 0;
		UniqueFd sock = connect_udp(to, err);
		on_upstream(flow, err, std::move(sock), for_confirm);
		return;
	}
	Flow *f = &flow;
	flow.connector = Connector::start(loop_, to, options_.connect_timeout_ms,
					  [this, f, for_confirm](int error, UniqueFd sock) {
						  on_upstream(*f, error, std::move(sock), for_confirm);
					  });
}

void Tunnel::on_upstream(Flow &flow, int error, UniqueFd sock, bool for_confirm)
{
	/* Called from the connector's own callback: destroying it here is allowed (upstream_connect.h). */
	flow.connector.reset();
	if (error) {
		counters_.upstream_connect_failures++;
		if (flow.record->error.empty())
			flow.record->error = "upstream " + flow.record->upstream + ": " + errno_text(error);
		TLOG_DEBUG("%s: upstream %s: %s", flow.record->flow.c_str(), flow.record->upstream.c_str(),
			   errno_text(error).c_str());
	}
	if (for_confirm) {
		if (!error && flow.answered) {
			/* bumblebee gave up waiting (ended: timeout) while we connected. */
			maybe_erase(flow);
			return;
		}
		if (!error)
			flow.upstream = std::move(sock);
		if (!flow.answered)
			send_confirm(flow, !error);
		maybe_erase(flow);
		return;
	}
	if (error) {
		/* The client must not see a clean close for a server that never answered: reset it. */
		if (flow.upgraded.is_valid())
			set_reset_on_close(flow.upgraded.get());
		flow.upgraded.reset();
		maybe_erase(flow);
		return;
	}
	start_relay(flow, std::move(flow.upgraded), std::move(sock));
}

void Tunnel::start_relay(Flow &flow, UniqueFd client, UniqueFd upstream)
{
	std::unique_ptr<Relay> relay;
	if (flow.protocol == proto::FlowProtocol::tcp) {
		set_nodelay(client.get());
		relay = std::make_unique<TcpRelay>(relay_ctx_, std::move(client), std::move(upstream));
	} else {
		relay = std::make_unique<UdpRelay>(relay_ctx_, std::move(client), std::move(upstream));
	}
	Flow *f = &flow;
	if (!relay->start([this, f](int error) { on_relay_end(*f, error); })) {
		if (flow.record->error.empty())
			flow.record->error = "relay: cannot poll its sockets";
		counters_.relay_errors++;
		maybe_erase(flow);
		return;
	}
	(flow.protocol == proto::FlowProtocol::tcp ? counters_.relays_tcp : counters_.relays_udp)++;
	flow.relay = std::move(relay);
	TLOG_DEBUG("%s: relaying to %s", flow.record->flow.c_str(), flow.record->upstream.c_str());
}

void Tunnel::take_relay_counts(Flow &flow)
{
	if (!flow.relay)
		return;
	flow.record->relay_bytes_up = flow.relay->bytes_up();
	flow.record->relay_bytes_down = flow.relay->bytes_down();
	counters_.relay_bytes_up += flow.relay->bytes_up();
	counters_.relay_bytes_down += flow.relay->bytes_down();
}

void Tunnel::on_relay_end(Flow &flow, int error)
{
	take_relay_counts(flow);
	if (error) {
		counters_.relay_errors++;
		if (flow.record->error.empty())
			flow.record->error = "relay: " + errno_text(error);
	}
	TLOG_DEBUG("%s: relay ended (%s), up %llu down %llu bytes", flow.record->flow.c_str(),
		   error ? errno_text(error).c_str() : "eof",
		   static_cast<unsigned long long>(flow.record->relay_bytes_up),
		   static_cast<unsigned long long>(flow.record->relay_bytes_down));
	/* We are inside the relay's end(): destroying it here is allowed (upstream_relay.h). */
	flow.relay.reset();
	maybe_erase(flow);
}

/* ---------------- lifecycle ---------------- */

void Tunnel::fail_flow(Flow &flow, const char *reason, const std::string &error, bool refuse)
{
	if (flow.record->reason.empty())
		flow.record->reason = reason;
	if (flow.record->error.empty())
		flow.record->error = error;
	if (refuse)
		table_->refuse(flow);
	flow.answered = true;
	flow.peer.reset();
	flow.connector.reset();
	flow.upstream.reset();
	flow.upgraded.reset();
	take_relay_counts(flow);
	flow.relay.reset();
	table_->close_socket(flow);
	maybe_erase(flow);
}

void Tunnel::maybe_erase(Flow &flow)
{
	if (flow.busy() || flow.upstream.is_valid() || flow.upgraded.is_valid())
		return;
	table_->erase(flow);
	check_drained();
}

void Tunnel::sweep()
{
	std::uint64_t now = uv_now(loop_);
	for (Flow *flow : table_->snapshot()) {
		if (flow->answered || now < flow->deadline_ms)
			continue;
		counters_.upgrade_no_answer++;
		flow->record->expect_ended = false;
		TLOG_WARN("%s: bumblebee did not answer its upgrade; giving up", flow->record->flow.c_str());
		fail_flow(*flow, "no_answer", "bumblebee did not answer the upgrade", true);
	}
}

void Tunnel::on_signal(int signum)
{
	if (signum == SIGCHLD) {
		reap_child();
		return;
	}
	if (child_exited_)
		return;
	if (phase_ == Phase::starting) {
		/* PROGRAM has not started: nothing to pass the signal to, so stop here. */
		TLOG_INFO("%s before PROGRAM started; stopping", strsignal(signum));
		setup_failed_ = true;
		setup_status_ = 128 + signum;
		begin_drain(); /* the child's SIGCHLD ends the run */
		return;
	}
	/* PROGRAM decides what the signal means; we end when it does. */
	::kill(child_.pid, signum);
}

void Tunnel::reap_child()
{
	if (child_exited_ || child_.pid <= 0)
		return;
	int status = 0;
	pid_t r;
	do
		r = ::waitpid(child_.pid, &status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r != child_.pid)
		return;
	child_exited_ = true;
	if (WIFEXITED(status))
		exit_status_ = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		exit_status_ = 128 + WTERMSIG(status);
	TLOG_DEBUG("PROGRAM exited with status %d", exit_status_);
	begin_drain();
}

void Tunnel::begin_drain()
{
	if (phase_ == Phase::closing || phase_ == Phase::done)
		return;
	if (setup_failed_) {
		uv_timer_stop(phase_timer_);
		phase_ = Phase::draining;
		/* PROGRAM never ran: end the child first; its SIGCHLD brings us back here. */
		if (!child_exited_)
			::kill(child_.pid, SIGKILL);
		else
			close_all();
		return;
	}
	if (phase_ == Phase::draining) {
		check_drained();
		return;
	}
	phase_ = Phase::draining;
	uv_timer_start(phase_timer_, [](uv_timer_t *t) {
		auto *self = static_cast<Tunnel *>(t->data);
		guarded("drain", [&] {
			if (self->phase_ == Phase::draining) {
				TLOG_DEBUG("drain time is up; closing what is left");
				self->close_all();
			}
		});
	}, options_.drain_ms, 0);
	check_drained();
}

bool Tunnel::drained() const
{
	/*
	 * TCP flows still exchanging packets, upgrades not yet answered and relays still
	 * moving bytes keep us; UDP flows do not (bumblebee ends them on its own idle timer).
	 */
	for (Flow *flow : table_->snapshot()) {
		if (!flow->answered || flow->connector)
			return false;
		if (flow->protocol == proto::FlowProtocol::tcp && (flow->socket_open() || flow->relay))
			return false;
	}
	return true;
}

void Tunnel::check_drained()
{
	if (phase_ == Phase::draining && child_exited_ && drained())
		close_all();
}

void Tunnel::close_all()
{
	if (phase_ == Phase::closing || phase_ == Phase::done)
		return;
	phase_ = Phase::closing;
	uv_timer_stop(phase_timer_);
	/* Closing a flow socket tells bumblebee the flow is over; its ended follows shortly. */
	for (Flow *flow : table_->snapshot()) {
		if (flow->record->reason.empty() && !flow->record->ended)
			flow->record->reason = "closed";
		take_relay_counts(*flow);
		flow->relay.reset();
		flow->connector.reset();
		flow->upstream.reset();
		flow->upgraded.reset();
		flow->peer.reset();
		table_->close_socket(*flow);
		table_->erase(*flow);
	}
	awaiting_ended_ = 0;
	for (const auto &rec : report_.flows())
		awaiting_ended_ += rec.expect_ended && !rec.ended;
	if (awaiting_ended_ == 0 || !link_->ready()) {
		finish();
		return;
	}
	closing_deadline_ms_ = uv_now(loop_) + kClosingCapMs;
	uv_timer_start(phase_timer_, closing_timer_cb, kClosingGraceMs, 0);
}

void Tunnel::closing_timer_cb(uv_timer_t *timer)
{
	auto *self = static_cast<Tunnel *>(timer->data);
	guarded("closing", [&] { self->finish(); });
}

void Tunnel::finish()
{
	if (phase_ == Phase::done)
		return;
	phase_ = Phase::done;
	link_->stop();
	tun_->close();
	child_.netns.reset();
	uv_timer_stop(phase_timer_);
	uv_timer_stop(sweep_timer_);
	for (auto *s : signals_)
		uv_signal_stop(s);
	uv_stop(loop_);
}

} // namespace shoal::tunnel
