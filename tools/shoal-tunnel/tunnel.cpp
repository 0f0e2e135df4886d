// Tunnel: setting up the loop, PROGRAM's start and end, the link's ups and downs, draining and closing.
#include "tunnel.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

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

/* Four hex digits that differ between runs (the clock's nanoseconds will do). */
std::string run_tag()
{
	char buf[16];
	std::snprintf(buf, sizeof buf, "%04x", static_cast<unsigned>((uv_hrtime() >> 3) & 0xffff));
	return buf;
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
	std::string prefix = std::to_string(::getpid()) + "." + run_tag() + ".";

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
	table_->prune(now);
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
	/* drain_ms from now, or at once when check_drained() finds nothing left to wait for. */
	uv_timer_start(phase_timer_, drain_timer_cb, options_.drain_ms, 0);
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
	/*
	 * Called from deep inside flow handling (an erase in a loop over flows): closing
	 * everything right here would pull flows out from under our callers. The phase timer,
	 * due at once, does it from the loop instead.
	 */
	if (phase_ == Phase::draining && child_exited_ && !setup_failed_ && drained())
		uv_timer_start(phase_timer_, drain_timer_cb, 0, 0);
}

void Tunnel::drain_timer_cb(uv_timer_t *timer)
{
	auto *self = static_cast<Tunnel *>(timer->data);
	guarded("drain", [&] {
		if (self->phase_ == Phase::draining)
			self->close_all();
	});
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

bool Tunnel::last_ended_arrived()
{
	if (phase_ != Phase::closing || awaiting_ended_ == 0)
		return false;
	if (--awaiting_ended_ == 0) {
		/* From the loop, not from inside the link's message handler. */
		uv_timer_start(phase_timer_, closing_timer_cb, 0, 0);
		return true;
	}
	/* Still arriving: grant another grace period, within the overall cap. */
	std::uint64_t now = uv_now(loop_);
	if (now < closing_deadline_ms_)
		uv_timer_start(phase_timer_, closing_timer_cb, std::min(kClosingGraceMs, closing_deadline_ms_ - now), 0);
	return false;
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
