// BumblebeeService: configuration, the namespace, flow lifecycle and timers, status and metrics, upgrades and stop.
#include "bumblebee_service.h"

#include <shoal/proto/base64.h>
#include <shoal/proto/messages.h>
#include <shoal/service/config.h>
#include <shoal/service/log.h>
#include <shoal/service/metrics.h>

namespace shoal::bumblebee {

using proto::EndReason;
using proto::FlowProtocol;

namespace {

std::int64_t wall_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

/* "100.64.0.1/10" → address and prefix length; throws ConfigError naming key. */
std::pair<packet::Addr, unsigned> parse_cidr(const std::string &key, const std::string &text, int family)
{
	auto slash = text.find('/');
	auto addr = packet::Addr::parse(text.substr(0, slash));
	unsigned max = family == AF_INET ? 32 : 128, len = 0;
	bool ok = addr && addr->family == family && slash != std::string::npos && slash + 1 < text.size();
	if (ok) {
		try {
			std::size_t used = 0;
			len = static_cast<unsigned>(std::stoul(text.substr(slash + 1), &used));
			ok = used == text.size() - slash - 1 && len <= max - 2 && len >= (family == AF_INET ? 8 : 64);
		} catch (const std::exception &) {
			ok = false;
		}
	}
	if (!ok)
		throw service::ConfigError(key + ": must be an " + (family == AF_INET ? "IPv4" : "IPv6") +
					   " address with a prefix length of " +
					   (family == AF_INET ? "8-30" : "64-126") + ", got \"" + text + "\"");
	return {*addr, len};
}

constexpr std::size_t kHeldPerItem = 4000; /* hold-down entries per upgrade item: well under a message */

} // namespace

BumblebeeService::BumblebeeService() : buffers_(kBatch * kBufSize)
{
	outgoing_.reserve(kBatch);
}

BumblebeeService::~BumblebeeService()
{
	flows_.clear();
	if (sweep_timer_)
		uv_close(reinterpret_cast<uv_handle_t *>(sweep_timer_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
}

void BumblebeeService::add_options(service::ConfigSchema &schema)
{
	using service::check_unsigned_range;
	schema.add({"namespace.tun_name", "bb0", "name of the TUN device inside bumblebee's namespace", "", "", false,
		    service::check_not_empty()});
	schema.add({"namespace.mtu", 65520u, "MTU of the TUN device (flows' packets may be up to this size)", "--mtu",
		    "BYTES", false, check_unsigned_range(1280, 65535)});
	schema.add({"namespace.txqueuelen", 1000u, "packets the TUN queues toward bumblebee before the kernel drops", "",
		    "", false, check_unsigned_range(1, 100000)});
	schema.add({"namespace.inet4", "100.64.0.1/10",
		    "the listener's IPv4 address; the rest of its prefix is the NAT pool (one address per flow)", "",
		    "", false, service::check_not_empty()});
	schema.add({"namespace.inet6", "fd5e:b0b0::1/64",
		    "the listener's IPv6 address; the rest of its prefix is the NAT pool (\"\": no IPv6)", "", "",
		    false});
	schema.add({"namespace.port", 80u, "the listener's port inside the namespace", "", "", false,
		    check_unsigned_range(1, 65535)});
	schema.add({"flows.max", 100000u, "flows at once; more are refused with busy", "--max-flows", "N", false,
		    check_unsigned_range(1, 10000000)});
	schema.add({"flows.max_pending", 10000u,
		    "flows not upgraded yet (first packet, confirm, handshake) at once; more are refused with busy",
		    "", "", false, check_unsigned_range(1, 10000000)});
	schema.add({"flows.timeout_ms", 10000u,
		    "default time for the first packet, the confirm and the handshake (upgrade's timeout_ms)", "",
		    "", false, check_unsigned_range(1, 600000)});
	schema.add({"flows.idle_timeout_ms", 7200000u, "end a TCP flow after this long without a packet (0: never)",
		    "", "", false, check_unsigned_range(0, 86400000)});
	schema.add({"flows.udp_idle_timeout_ms", 120000u,
		    "end a UDP flow after this long without a datagram (0: never)", "", "", false,
		    check_unsigned_range(0, 86400000)});
	schema.add({"flows.hold_down_ms", 60000u,
		    "a NAT address is not reused for this long after its flow ends (the namespace's TIME_WAIT)", "",
		    "", false, check_unsigned_range(0, 3600000)});
	schema.add({"flows.socket_buffer", 4194304u,
		    "SO_SNDBUF for flow sockets (SO_SNDBUFFORCE where permitted)", "", "", false,
		    check_unsigned_range(65536, 1 << 30)});
}

void BumblebeeService::init(service::Runtime &rt, const nlohmann::json &config)
{
	rt_ = &rt;
	const auto &ns = config["namespace"];
	ns_config_.tun_name = ns["tun_name"].get<std::string>();
	ns_config_.mtu = ns["mtu"].get<unsigned>();
	ns_config_.txqueuelen = ns["txqueuelen"].get<unsigned>();
	ns_config_.inet4 = ns["inet4"].get<std::string>();
	ns_config_.inet6 = ns["inet6"].get<std::string>();
	ns_config_.port = ns["port"].get<std::uint16_t>();
	const auto &fl = config["flows"];
	max_flows_ = fl["max"].get<std::size_t>();
	max_pending_ = fl["max_pending"].get<std::size_t>();
	default_timeout_ms_ = fl["timeout_ms"].get<std::uint64_t>();
	idle_timeout_ms_ = fl["idle_timeout_ms"].get<std::uint64_t>();
	udp_idle_timeout_ms_ = fl["udp_idle_timeout_ms"].get<std::uint64_t>();
	hold_down_ms_ = fl["hold_down_ms"].get<std::uint64_t>();
	sndbuf_ = fl["socket_buffer"].get<int>();

	try {
		ns_config_.validate();
	} catch (const std::invalid_argument &e) {
		throw service::ConfigError(std::string("namespace.") + e.what());
	}
	auto [a4, len4] = parse_cidr("namespace.inet4", ns_config_.inet4, AF_INET);
	listen4_ = {a4, ns_config_.port};
	pool4_ = std::make_unique<SlotPool>(a4, len4, a4, hold_down_ms_);
	if (!ns_config_.inet6.empty()) {
		auto [a6, len6] = parse_cidr("namespace.inet6", ns_config_.inet6, AF_INET6);
		listen6_ = {a6, ns_config_.port};
		pool6_ = std::make_unique<SlotPool>(a6, len6, a6, hold_down_ms_);
	}
}

void BumblebeeService::start()
{
	auto ns = create_netns(ns_config_);
	if (!ns)
		throw std::runtime_error(ns.error());
	ns_ = std::move(*ns);
	rt_->log().info("Namespace ready: {} (MTU {}), listening on {}{}", ns_config_.tun_name, ns_config_.mtu,
			listen4_.to_string(), pool6_ ? " and " + listen6_.to_string() : "");
	start_polls();
}

void BumblebeeService::start_polls()
{
	tun_poll_.start(rt_->loop(), ns_.tun.get(), this, [](uv_poll_t *h, int status, int) {
		auto *s = static_cast<BumblebeeService *>(h->data);
		if (status >= 0)
			s->on_tun_readable();
		else
			s->poll_failed("the TUN device", status);
	});
	listen4_poll_.start(rt_->loop(), ns_.listener4.get(), this, [](uv_poll_t *h, int status, int) {
		auto *s = static_cast<BumblebeeService *>(h->data);
		if (status >= 0)
			s->on_listener_readable(s->ns_.listener4.get());
		else
			s->poll_failed("the IPv4 listener", status);
	});
	if (ns_.listener6.is_valid())
		listen6_poll_.start(rt_->loop(), ns_.listener6.get(), this, [](uv_poll_t *h, int status, int) {
			auto *s = static_cast<BumblebeeService *>(h->data);
			if (status >= 0)
				s->on_listener_readable(s->ns_.listener6.get());
			else
				s->poll_failed("the IPv6 listener", status);
		});
	if (!sweep_timer_) {
		sweep_timer_ = new uv_timer_t;
		uv_timer_init(rt_->loop(), sweep_timer_);
		sweep_timer_->data = this;
		uv_timer_start(sweep_timer_, [](uv_timer_t *t) { static_cast<BumblebeeService *>(t->data)->sweep(); }, 100,
			       100);
		uv_unref(reinterpret_cast<uv_handle_t *>(sweep_timer_));
	}
}

void BumblebeeService::poll_failed(const char *what, int status)
{
	/* libuv stops a poll that reported an error; the next sweep starts it again. */
	rt_->log().error("Failed to poll {}: {}", what, uv_strerror(status));
	accepts_paused_ = true;
}

void BumblebeeService::handle(service::Call call)
{
	if (call.request.op == "upgrade")
		handle_upgrade(call);
	else
		handle_confirm(call);
}

Flow *BumblebeeService::add_flow(std::unique_ptr<Flow> f)
{
	f->owner = this;
	std::string task = f->task;
	auto [it, inserted] = flows_.emplace(task, std::move(f));
	return it->second.get();
}

bool BumblebeeService::watch(Flow &f)
{
	return f.sock_poll.start(rt_->loop(), f.sock.get(), &f, [](uv_poll_t *h, int status, int events) {
		auto *fl = static_cast<Flow *>(h->data);
		static_cast<BumblebeeService *>(fl->owner)->on_flow_event(*fl, status, events);
	});
}

void BumblebeeService::end_later(Flow &f, EndReason reason, int error)
{
	if (f.ending)
		return;
	f.ending = true;
	deferred_.push_back({&f, reason, error});
}

void BumblebeeService::run_deferred_ends()
{
	while (!deferred_.empty()) {
		DeferredEnd d = deferred_.back();
		deferred_.pop_back();
		end(*d.flow, d.reason, d.error);
	}
}

void BumblebeeService::end(Flow &f, EndReason reason, int error)
{
	nlohmann::json fields = {
		{"task", f.task},
		{"metadata", nlohmann::json::parse(f.metadata, nullptr, false)},
		{"reason", proto::to_string(reason)},
		{"bytes_in", f.bytes_in},
		{"bytes_out", f.bytes_out},
		{"packets_in", f.packets_in},
		{"packets_out", f.packets_out},
		{"duration_ms", std::max<std::int64_t>(0, wall_ms() - f.started_wall_ms)},
	};
	if (reason == EndReason::error)
		fields["error"] = service::errno_name(error);
	switch (reason) {
	case EndReason::eof: counters_.ended_eof++; break;
	case EndReason::timeout: counters_.ended_timeout++; break;
	case EndReason::rejected: counters_.ended_rejected++; break;
	case EndReason::shutdown: counters_.ended_shutdown++; break;
	default: counters_.ended_error++; break;
	}
	rt_->log().debug("Flow {} ({} → {}) ended: {}", f.task, f.client_ep.to_string(), f.server_ep.to_string(),
			 proto::to_string(reason));
	if (f.has_slot) {
		by_slot_.erase(f.slot_ep);
		pool_for(f.slot_ep.addr.family)->release(f.slot_ep.addr, now());
	}
	pending_.erase(&f);
	service::ClientRef client = f.client;
	std::string request_id = f.request_id;
	std::string task = f.task;
	flows_.erase(task); /* closes the polls, then the flow socket */
	rt_->deliver(client, "ended", fields, {}, request_id);
}

void BumblebeeService::sweep()
{
	std::uint64_t t = now();
	if (accepts_paused_) {
		accepts_paused_ = false;
		tun_poll_.resume();
		listen4_poll_.resume();
		listen6_poll_.resume();
	}
	std::vector<Flow *> late;
	for (Flow *f : pending_)
		if (t >= f->deadline_ms && !f->ending)
			late.push_back(f);
	for (Flow *f : late) {
		refuse_client(*f);
		rst_to_kernel(*f);
		end(*f, EndReason::timeout);
	}
	if (++sweeps_ % 10)
		return; /* idle flows: once a second is plenty */
	std::vector<Flow *> idle;
	for (auto &[task, f] : flows_) {
		std::uint64_t limit = f->protocol == FlowProtocol::tcp ? idle_timeout_ms_ : udp_idle_timeout_ms_;
		if (f->state == FlowState::upgraded && limit && t - f->last_active_ms >= limit && !f->ending)
			idle.push_back(f.get());
	}
	for (Flow *f : idle) {
		rst_to_client(*f);
		rst_to_kernel(*f);
		end(*f, EndReason::timeout);
	}
}

/* ---------------------------------------------------------------- status and metrics */

nlohmann::json BumblebeeService::Counters::to_json() const
{
	return {{"upgrades", upgrades},	       {"upgraded", upgraded},
		{"ended_eof", ended_eof},      {"ended_error", ended_error},
		{"ended_timeout", ended_timeout}, {"ended_rejected", ended_rejected},
		{"ended_shutdown", ended_shutdown}, {"refused_busy", refused_busy},
		{"refused_bad_fds", refused_bad_fds}, {"refused_bad_first", refused_bad_first},
		{"refused_exhausted", refused_exhausted}, {"packets_out", packets_out},
		{"bytes_out", bytes_out},      {"packets_in", packets_in},
		{"bytes_in", bytes_in},	       {"drop_malformed", drop_malformed},
		{"drop_foreign", drop_foreign}, {"drop_no_flow", drop_no_flow},
		{"drop_icmp", drop_icmp},      {"drop_congested", drop_congested},
		{"drop_tun_write", drop_tun_write}, {"drop_held", drop_held},
		{"accepted_orphans", accepted_orphans}, {"rsts_sent", rsts_sent}};
}

void BumblebeeService::Counters::from_json(const nlohmann::json &j)
{
	std::pair<const char *, std::uint64_t *> all[] = {
		{"upgrades", &upgrades}, {"upgraded", &upgraded}, {"ended_eof", &ended_eof},
		{"ended_error", &ended_error}, {"ended_timeout", &ended_timeout}, {"ended_rejected", &ended_rejected},
		{"ended_shutdown", &ended_shutdown}, {"refused_busy", &refused_busy},
		{"refused_bad_fds", &refused_bad_fds}, {"refused_bad_first", &refused_bad_first},
		{"refused_exhausted", &refused_exhausted}, {"packets_out", &packets_out}, {"bytes_out", &bytes_out},
		{"packets_in", &packets_in}, {"bytes_in", &bytes_in}, {"drop_malformed", &drop_malformed},
		{"drop_foreign", &drop_foreign}, {"drop_no_flow", &drop_no_flow}, {"drop_icmp", &drop_icmp},
		{"drop_congested", &drop_congested}, {"drop_tun_write", &drop_tun_write}, {"drop_held", &drop_held},
		{"accepted_orphans", &accepted_orphans}, {"rsts_sent", &rsts_sent}};
	for (auto &[name, field] : all) /* a counter an older version did not have starts at 0 */
		*field = j.value(name, std::uint64_t{0});
}

void BumblebeeService::fill_status(nlohmann::json &s)
{
	std::size_t by_state[4] = {};
	for (auto &[task, f] : flows_)
		by_state[static_cast<int>(f->state)]++;
	s["tasks"] = flows_.size();
	s["flows"] = {{"active", flows_.size()},
		      {"first_packet", by_state[0]},
		      {"confirm", by_state[1]},
		      {"handshake", by_state[2]},
		      {"upgraded", by_state[3]}};
	s["counters_flows"] = counters_.to_json();
	nlohmann::json nat = {{"inet4", {{"in_use", pool4_->in_use()}, {"held_down", pool4_->held_down()},
					 {"capacity", pool4_->capacity()}}}};
	if (pool6_)
		nat["inet6"] = {{"in_use", pool6_->in_use()}, {"held_down", pool6_->held_down()},
				{"capacity", pool6_->capacity()}};
	s["nat"] = nat;
	s["namespace"] = {{"tun", ns_config_.tun_name}, {"mtu", ns_config_.mtu}, {"listen4", listen4_.to_string()}};
	if (pool6_)
		s["namespace"]["listen6"] = listen6_.to_string();
}

nlohmann::json BumblebeeService::list()
{
	nlohmann::json out = nlohmann::json::array();
	std::int64_t t = wall_ms();
	for (const auto &[task, f] : flows_) {
		nlohmann::json j = {{"task", task},
				    {"owner", f->client.owner.empty() ? nlohmann::json() : nlohmann::json(f->client.owner)},
				    {"age_ms", std::max<std::int64_t>(0, t - f->started_wall_ms)},
				    {"metadata", nlohmann::json::parse(f->metadata, nullptr, false)},
				    {"state", to_string(f->state)},
				    {"bytes_in", f->bytes_in},
				    {"bytes_out", f->bytes_out},
				    {"packets_in", f->packets_in},
				    {"packets_out", f->packets_out}};
		if (f->state != FlowState::first_packet)
			j["flow"] = f->flow_json();
		if (f->has_slot)
			j["nat"] = f->slot_ep.to_string();
		out.push_back(std::move(j));
	}
	return out;
}

void BumblebeeService::write_metrics(service::PrometheusWriter &w)
{
	const Counters &c = counters_;
	auto d = [](std::uint64_t v) { return static_cast<double>(v); };
	w.gauge("bumblebee_flows", "flows in progress", d(flows_.size()));
	w.counter("bumblebee_upgrades_total", "upgrade requests accepted", d(c.upgrades));
	w.counter("bumblebee_upgraded_total", "flows handed over as kernel sockets", d(c.upgraded));
	for (auto [reason, n] : {std::pair{"eof", c.ended_eof}, std::pair{"error", c.ended_error},
				 std::pair{"timeout", c.ended_timeout}, std::pair{"rejected", c.ended_rejected},
				 std::pair{"shutdown", c.ended_shutdown}})
		w.counter("bumblebee_flows_ended_total", "flows ended, by reason", d(n), {{"reason", reason}});
	for (auto [why, n] : {std::pair{"busy", c.refused_busy}, std::pair{"bad_fds", c.refused_bad_fds},
			      std::pair{"bad_first_packet", c.refused_bad_first},
			      std::pair{"exhausted", c.refused_exhausted}})
		w.counter("bumblebee_upgrades_refused_total", "upgrades refused, by cause", d(n), {{"cause", why}});
	w.counter("bumblebee_packets_total", "IP packets carried", d(c.packets_out), {{"direction", "out"}});
	w.counter("bumblebee_packets_total", "IP packets carried", d(c.packets_in), {{"direction", "in"}});
	w.counter("bumblebee_bytes_total", "IP bytes carried", d(c.bytes_out), {{"direction", "out"}});
	w.counter("bumblebee_bytes_total", "IP bytes carried", d(c.bytes_in), {{"direction", "in"}});
	for (auto [why, n] : {std::pair{"malformed", c.drop_malformed}, std::pair{"foreign", c.drop_foreign},
			      std::pair{"no_flow", c.drop_no_flow}, std::pair{"icmp", c.drop_icmp},
			      std::pair{"congested", c.drop_congested}, std::pair{"tun_write", c.drop_tun_write},
			      std::pair{"held", c.drop_held}})
		w.counter("bumblebee_packets_dropped_total", "packets dropped, by cause", d(n), {{"cause", why}});
	w.gauge("bumblebee_nat_in_use", "NAT addresses held by flows", d(pool4_->in_use()), {{"family", "inet4"}});
	w.gauge("bumblebee_nat_held_down", "NAT addresses waiting out their hold-down", d(pool4_->held_down()),
		{{"family", "inet4"}});
	if (pool6_) {
		w.gauge("bumblebee_nat_in_use", "NAT addresses held by flows", d(pool6_->in_use()), {{"family", "inet6"}});
		w.gauge("bumblebee_nat_held_down", "NAT addresses waiting out their hold-down", d(pool6_->held_down()),
			{{"family", "inet6"}});
	}
}

/* ---------------------------------------------------------------- live upgrade */

void BumblebeeService::pause()
{
	tun_poll_.pause();
	listen4_poll_.pause();
	listen6_poll_.pause();
	for (auto &[task, f] : flows_) {
		f->sock_poll.pause();
		f->payload_poll.pause();
	}
}

void BumblebeeService::resume()
{
	tun_poll_.resume();
	listen4_poll_.resume();
	listen6_poll_.resume();
	for (auto &[task, f] : flows_) {
		f->sock_poll.resume();
		f->payload_poll.resume();
	}
}

void BumblebeeService::export_items(const std::function<void(service::ExportItem)> &emit)
{
	std::uint64_t t = now();
	std::vector<int> fds = {ns_.tun.get(), ns_.listener4.get(), ns_.netns.get(), ns_.userns.get()};
	if (ns_.listener6.is_valid())
		fds.push_back(ns_.listener6.get());
	emit({{{"kind", "bumblebee"}, {"next_task", next_task_}, {"counters", counters_.to_json()},
	       {"namespace", ns_config_.to_json()}, {"listener6", ns_.listener6.is_valid()}},
	      std::move(fds),
	      false});
	for (auto [family, pool] : {std::pair{4, pool4_.get()}, std::pair{6, pool6_.get()}}) {
		if (!pool)
			continue;
		std::size_t first = 0;
		do {
			nlohmann::json rec = pool->save(t, first, kHeldPerItem);
			rec["kind"] = "pool";
			rec["family"] = family;
			emit({std::move(rec), {}, false});
			first += kHeldPerItem;
		} while (first < pool->held_down());
	}
	for (auto &[task, f] : flows_) {
		nlohmann::json rec = {
			{"kind", "flow"},
			{"task", f->task},
			{"client", f->client.to_json()},
			{"request_id", f->request_id},
			{"metadata", f->metadata},
			{"protocol", proto::to_string(f->protocol)},
			{"state", static_cast<int>(f->state)},
			{"confirm", f->confirm},
			{"seqpacket", f->seqpacket},
			{"client_ep", f->client_ep.to_string()},
			{"server_ep", f->server_ep.to_string()},
			{"slot", f->has_slot ? nlohmann::json(f->slot_ep.to_string()) : nlohmann::json()},
			{"first", proto::base64_encode({reinterpret_cast<const char *>(f->first.data()), f->first.size()})},
			{"tcp", {f->client_ack, f->kernel_ack, f->client_ack_valid, f->kernel_ack_valid, f->fin_out_seq,
				 f->fin_in_seq, f->fin_out, f->fin_in, f->fin_out_acked, f->fin_in_acked, f->client_next,
				 f->kernel_next, f->client_next_valid, f->kernel_next_valid}},
			{"counts", {f->bytes_out, f->packets_out, f->bytes_in, f->packets_in}},
			{"started_wall_ms", f->started_wall_ms},
			{"deadline_in_ms", f->deadline_ms > t ? f->deadline_ms - t : 0},
			{"idle_ms", t - std::min(t, f->last_active_ms)},
			{"timeout_ms", f->timeout_ms},
			{"payload", f->payload.is_valid()},
			{"app", f->app.is_valid()},
		};
		std::vector<int> ffds = {f->sock.get()};
		if (f->payload.is_valid())
			ffds.push_back(f->payload.get());
		if (f->app.is_valid())
			ffds.push_back(f->app.get());
		emit({std::move(rec), std::move(ffds), true});
	}
}

void BumblebeeService::abandon()
{
	tun_poll_.close();
	listen4_poll_.close();
	listen6_poll_.close();
	pending_.clear();
	by_slot_.clear();
	deferred_.clear();
	flows_.clear(); /* closes only this process's copies; the successor has its own */
}

Expected<void, std::string> BumblebeeService::import_item(service::ImportItem item)
{
	const nlohmann::json &rec = item.record;
	std::uint64_t t = now();
	try {
		const std::string kind = rec.at("kind");
		if (kind == "bumblebee") {
			bool has6 = rec.at("listener6").get<bool>();
			if (item.fds.size() != (has6 ? 5u : 4u))
				return Unexpected(std::string("bumblebee record: wrong number of fds"));
			next_task_ = rec.at("next_task").get<std::uint64_t>();
			counters_.from_json(rec.at("counters"));
			NetnsConfig old = NetnsConfig::from_json(rec.at("namespace"));
			if (old.inet4 != ns_config_.inet4 || old.inet6 != ns_config_.inet6 || old.port != ns_config_.port)
				return Unexpected("the namespace's addresses changed (" + old.inet4 + " " + old.inet6 +
						  "); a live upgrade cannot renumber live flows");
			ns_config_ = old;
			ns_.tun = std::move(item.fds[0]);
			ns_.listener4 = std::move(item.fds[1]);
			ns_.netns = std::move(item.fds[2]);
			ns_.userns = std::move(item.fds[3]);
			if (has6)
				ns_.listener6 = std::move(item.fds[4]);
			return {};
		}
		if (kind == "pool") {
			SlotPool *pool = rec.at("family") == 4 ? pool4_.get() : pool6_.get();
			if (!pool)
				return Unexpected(std::string("an IPv6 pool came but namespace.inet6 is empty"));
			pool->restore(rec, t);
			return {};
		}
		if (kind != "flow")
			return Unexpected("unknown record kind \"" + kind + "\"");
		auto f = std::make_unique<Flow>();
		f->task = rec.at("task");
		f->client = service::ClientRef::from_json(rec.at("client"));
		f->request_id = rec.at("request_id");
		f->metadata = rec.at("metadata");
		auto protocol = proto::flow_protocol_from_string(rec.at("protocol").get<std::string>());
		int state = rec.at("state").get<int>();
		if (!protocol || state < 0 || state > static_cast<int>(FlowState::upgraded))
			return Unexpected("flow " + f->task + ": unknown protocol or state");
		f->protocol = *protocol;
		f->state = static_cast<FlowState>(state);
		f->confirm = rec.at("confirm");
		f->seqpacket = rec.at("seqpacket");
		f->detached = true;
		auto parse_ep = [](const nlohmann::json &j) -> std::optional<packet::Endpoint> {
			if (!j.is_string())
				return std::nullopt;
			auto ss = proto::parse_endpoint(j.get<std::string>());
			if (!ss)
				return std::nullopt;
			return packet::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr *>(&*ss), sizeof(*ss));
		};
		if (f->state != FlowState::first_packet) {
			auto c = parse_ep(rec.at("client_ep")), s = parse_ep(rec.at("server_ep"));
			if (!c || !s)
				return Unexpected("flow " + f->task + ": bad endpoints");
			f->client_ep = *c;
			f->server_ep = *s;
		}
		if (!rec.at("slot").is_null()) {
			auto slot = parse_ep(rec.at("slot"));
			SlotPool *pool = slot ? pool_for(slot->addr.family) : nullptr;
			if (!pool || !pool->contains(slot->addr))
				return Unexpected("flow " + f->task + ": NAT address outside the pool");
			f->slot_ep = *slot;
			f->has_slot = true;
			pool->claim(slot->addr);
		}
		auto first = proto::base64_decode(rec.at("first").get<std::string>());
		if (!first)
			return Unexpected("flow " + f->task + ": bad first packet");
		f->first.assign(first->begin(), first->end());
		const auto &tcp = rec.at("tcp");
		f->client_ack = tcp.at(0);
		f->kernel_ack = tcp.at(1);
		f->client_ack_valid = tcp.at(2);
		f->kernel_ack_valid = tcp.at(3);
		f->fin_out_seq = tcp.at(4);
		f->fin_in_seq = tcp.at(5);
		f->fin_out = tcp.at(6);
		f->fin_in = tcp.at(7);
		f->fin_out_acked = tcp.at(8);
		f->fin_in_acked = tcp.at(9);
		if (tcp.size() >= 14) {
			f->client_next = tcp.at(10);
			f->kernel_next = tcp.at(11);
			f->client_next_valid = tcp.at(12);
			f->kernel_next_valid = tcp.at(13);
		}
		const auto &counts = rec.at("counts");
		f->bytes_out = counts.at(0);
		f->packets_out = counts.at(1);
		f->bytes_in = counts.at(2);
		f->packets_in = counts.at(3);
		f->started_wall_ms = rec.at("started_wall_ms");
		f->deadline_ms = t + rec.at("deadline_in_ms").get<std::uint64_t>();
		f->last_active_ms = t - std::min(t, rec.at("idle_ms").get<std::uint64_t>());
		f->timeout_ms = rec.at("timeout_ms");
		std::size_t want = 1 + rec.at("payload").get<bool>() + rec.at("app").get<bool>();
		if (item.fds.size() != want)
			return Unexpected("flow " + f->task + ": wrong number of fds");
		std::size_t k = 0;
		f->sock = std::move(item.fds[k++]);
		if (rec.at("payload").get<bool>())
			f->payload = std::move(item.fds[k++]);
		if (rec.at("app").get<bool>())
			f->app = std::move(item.fds[k++]);
		Flow *fl = add_flow(std::move(f));
		if (fl->has_slot)
			by_slot_[fl->slot_ep] = fl;
		if (fl->state != FlowState::upgraded)
			pending_.insert(fl);
		return {};
	} catch (const std::exception &e) {
		return Unexpected(std::string("malformed bumblebee record: ") + e.what());
	}
}

void BumblebeeService::resume_imported()
{
	start_polls();
	std::vector<Flow *> failed;
	for (auto &[task, f] : flows_) {
		bool ok = watch(*f);
		if (ok && f->payload.is_valid() && f->state == FlowState::upgraded)
			ok = f->payload_poll.start(rt_->loop(), f->payload.get(), f.get(), [](uv_poll_t *h, int status, int events) {
				auto *fl = static_cast<Flow *>(h->data);
				static_cast<BumblebeeService *>(fl->owner)->on_payload_event(*fl, status, events);
			});
		if (!ok)
			failed.push_back(f.get());
	}
	for (Flow *f : failed)
		end(*f, EndReason::error, EBADF);
}

void BumblebeeService::shutdown()
{
	std::size_t n = flows_.size();
	while (!flows_.empty()) {
		Flow &f = *flows_.begin()->second;
		/* Nobody will carry these packets any more: tell both ends now rather than let them time out. */
		refuse_client(f);
		rst_to_kernel(f);
		end(f, EndReason::shutdown);
	}
	/* Nothing left to pump: let the loop finish. */
	tun_poll_.close();
	listen4_poll_.close();
	listen6_poll_.close();
	if (n)
		rt_->log().info("Ended {} flows (shutdown)", n);
}

} // namespace shoal::bumblebee
