// Tunnel, per flow: the upgrade request, bumblebee's answers (syn, upgraded, ended, error), the upstream connect and relay.
#include "tunnel.h"

#include <cerrno>
#include <cstring>

#include <shoal/proto/address.h>

#include "uv_util.h"

namespace shoal::tunnel {

namespace {

/* An upgrade bumblebee never answers (it crashed holding it) is given up after its own timeout and this. */
constexpr std::uint64_t kAnswerSlackMs = 10000;
/* …or after this, when we did not tell bumblebee a timeout (its default is its own). */
constexpr std::uint64_t kDefaultAnswerMs = 120000;

std::string describe(const proto::ErrorReply &e)
{
	return std::string(proto::to_string(e.code)) + ": " + e.message;
}

} // namespace

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
	/* Nothing more comes about this flow: keep the record (in the report), drop the index entry. */
	records_.erase(rit);
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
		if (last_ended_arrived())
			return; /* everything else is closed already */
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
	records_.erase(flow->id); /* an error answers the upgrade: no ended follows */
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

} // namespace shoal::tunnel
