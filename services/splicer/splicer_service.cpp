// SplicerService: splice/cancel requests, relay endings, status and metrics, upgrades and stop.
#include "splicer_service.h"

#include <sys/socket.h>

#include <shoal/fdpass/socket_info.h>
#include <shoal/proto/messages.h>
#include <shoal/service/config.h>
#include <shoal/service/log.h>
#include <shoal/service/metrics.h>

namespace shoal::splicer {

using proto::ErrorCode;
using service::errno_name;

namespace {

const char *reason_name(EndReason r)
{
	switch (r) {
	case EndReason::eof:
		return "eof";
	case EndReason::error:
		return "error";
	case EndReason::idle_timeout:
		return "idle_timeout";
	case EndReason::cancelled:
		return "cancelled";
	case EndReason::shutdown:
		return "shutdown";
	}
	return "error";
}

std::int64_t now_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

/*
 * Why fd cannot be one end of a relay, or nothing when it can. The common case costs three
 * syscalls (type, family, peer); only a refusal looks closer, to say precisely why.
 */
std::optional<std::string> unfit_socket(int fd)
{
	int type = 0, family = 0;
	socklen_t len = sizeof(type);
	if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return errno == ENOTSOCK ? "not a socket" : "unusable (" + errno_name(errno) + ")";
	if (type != SOCK_STREAM)
		return "not a stream socket";
	len = sizeof(family);
	if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0)
		return "unusable (" + errno_name(errno) + ")";
	if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
		return "not a TCP or Unix socket";
	sockaddr_storage peer{};
	len = sizeof(peer);
	if (::getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &len) < 0) {
		auto info = socket_info(fd);
		return info && info->listening ? "a listening socket" : "not connected";
	}
	return std::nullopt;
}

} // namespace

SplicerService::SplicerService() = default;

SplicerService::~SplicerService()
{
	relays_.clear();
	if (sweep_) {
		uv_close(reinterpret_cast<uv_handle_t *>(sweep_),
			 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
		sweep_ = nullptr;
	}
}

void SplicerService::add_options(service::ConfigSchema &schema)
{
	using service::check_unsigned_range;
	schema.add({"relays.max", 100000u, "relays at once; more are refused with busy", "--max-relays", "N", false,
		    check_unsigned_range(1, 10000000)});
	schema.add({"relays.idle_timeout_ms", 0u,
		    "end a relay after this long without a byte either way, unless splice says otherwise (0: never)",
		    "", "", false, check_unsigned_range(0, 86400000)});
	schema.add({"pipes.size", 524288u, "bytes per pipe (F_SETPIPE_SZ; the kernel may give less)", "", "",
		    false, check_unsigned_range(4096, 1 << 28)});
	schema.add({"pipes.max", 4096u,
		    "pipes lent to relays at once; past it relays copy through user space instead", "", "", false,
		    check_unsigned_range(0, 1000000)});
	schema.add({"pipes.idle", 64u, "empty pipes kept for reuse", "", "", false,
		    check_unsigned_range(0, 100000)});
	schema.add({"splice_threshold", 16384u,
		    "reads at least this large switch a direction from copying to splice (16384 is the copy buffer)",
		    "", "", false, check_unsigned_range(1, 16384)});
}

void SplicerService::init(service::Runtime &rt, const nlohmann::json &config)
{
	rt_ = &rt;
	max_relays_ = config["relays"]["max"].get<std::size_t>();
	default_idle_timeout_ms_ = config["relays"]["idle_timeout_ms"].get<std::uint64_t>();
	PipePool::Limits limits;
	limits.pipe_size = config["pipes"]["size"].get<std::size_t>();
	limits.max_pipes = config["pipes"]["max"].get<std::size_t>();
	limits.max_idle = config["pipes"]["idle"].get<std::size_t>();
	pool_ = std::make_unique<PipePool>(limits);
	ctx_.loop = rt.loop();
	ctx_.pool = pool_.get();
	ctx_.config.splice_len = limits.pipe_size;
	ctx_.config.bulk_read = config["splice_threshold"].get<std::size_t>();
}

void SplicerService::start()
{
	start_sweep();
}

void SplicerService::start_sweep()
{
	sweep_ = new uv_timer_t;
	uv_timer_init(rt_->loop(), sweep_);
	sweep_->data = this;
	uv_timer_start(sweep_, [](uv_timer_t *t) { static_cast<SplicerService *>(t->data)->sweep_idle(); }, 100, 100);
	uv_unref(reinterpret_cast<uv_handle_t *>(sweep_));
}

void SplicerService::handle(service::Call call)
{
	if (call.request.op == "splice")
		handle_splice(call);
	else
		handle_cancel(call);
}

void SplicerService::handle_splice(service::Call &call)
{
	const std::string &id = call.request.id;
	auto req = proto::decode_splice(call.request);
	if (!req) {
		if (req.error().code == ErrorCode::bad_fds)
			totals_.refused_bad_fds++;
		rt_->fail(call.client, id, req.error().code, req.error().message);
		return;
	}
	for (std::size_t i = 0; i < 2; i++) {
		if (auto why = unfit_socket(call.fds[i].get())) {
			totals_.refused_bad_fds++;
			rt_->fail(call.client, id, ErrorCode::bad_fds,
				  std::string(i == 0 ? "a" : "b") + " (fd " + std::to_string(i) + "): " + *why);
			return;
		}
	}
	if (same_file(call.fds[0].get(), call.fds[1].get())) {
		totals_.refused_bad_fds++;
		rt_->fail(call.client, id, ErrorCode::bad_fds, "a and b are the same socket");
		return;
	}
	if (relays_.size() >= max_relays_) {
		totals_.refused_busy++;
		rt_->fail(call.client, id, ErrorCode::busy,
			  "relay limit reached (relays.max is " + std::to_string(max_relays_) + ")");
		return;
	}

	auto relay = std::make_unique<Relay>(ctx_, std::move(call.fds[0]), std::move(call.fds[1]));
	relay->task = "s" + std::to_string(next_task_++);
	relay->client = call.client;
	relay->request_id = id;
	relay->metadata = req->metadata.dump();
	relay->idle_timeout_ms = req->idle_timeout_ms.value_or(default_idle_timeout_ms_);
	Relay &r = *relay;
	if (!r.start([this](Relay &rel, EndReason reason, int error) { on_end(rel, reason, error); })) {
		rt_->fail(call.client, id, ErrorCode::internal, "cannot poll the sockets");
		return; /* the sockets close with relay */
	}
	relays_.emplace(r.task, std::move(relay));
	if (r.idle_timeout_ms)
		timed_.insert(&r);
	totals_.relays++;
	rt_->reply(call.client, id, "accepted", {{"task", r.task}});
	rt_->log().debug("Relay {} started for {}", r.task, call.client.owner.empty() ? "(no owner)" : call.client.owner);
}

void SplicerService::handle_cancel(service::Call &call)
{
	auto req = proto::decode_cancel(call.request);
	if (!req) {
		rt_->fail(call.client, call.request.id, req.error().code, req.error().message);
		return;
	}
	auto it = relays_.find(req->task);
	if (it == relays_.end()) {
		rt_->fail(call.client, call.request.id, ErrorCode::not_found, "task: no relay \"" + req->task + "\"");
		return;
	}
	rt_->reply(call.client, call.request.id, "cancelling", {{"task", req->task}});
	finish(*it->second, EndReason::cancelled);
}

void SplicerService::on_end(Relay &relay, EndReason reason, int error)
{
	deliver_done(relay, reason, error, relay.release());
}

void SplicerService::finish(Relay &relay, EndReason reason)
{
	Unsent ab, ba;
	auto fds = relay.finish(ab, ba);
	deliver_done(relay, reason, 0, std::move(fds), std::move(ab), std::move(ba));
}

void SplicerService::deliver_done(Relay &relay, EndReason reason, int error, std::pair<UniqueFd, UniqueFd> fds,
				  Unsent unsent_ab, Unsent unsent_ba)
{
	std::uint64_t ab = relay.a_to_b().bytes, ba = relay.b_to_a().bytes;
	nlohmann::json fields = {
		{"task", relay.task},
		{"metadata", nlohmann::json::parse(relay.metadata, nullptr, false)},
		{"reason", reason_name(reason)},
		{"bytes_a_to_b", ab},
		{"bytes_b_to_a", ba},
		{"duration_ms", std::max<std::int64_t>(0, now_ms() - relay.started_ms)},
	};
	if (reason == EndReason::error)
		fields["error"] = errno_name(error);
	if (unsent_ab.pipe.is_valid())
		fields["unsent_a_to_b"] = unsent_ab.bytes;
	if (unsent_ba.pipe.is_valid())
		fields["unsent_b_to_a"] = unsent_ba.bytes;

	switch (reason) {
	case EndReason::eof: totals_.ended_eof++; break;
	case EndReason::error: totals_.ended_error++; break;
	case EndReason::idle_timeout: totals_.ended_idle++; break;
	case EndReason::cancelled: totals_.ended_cancelled++; break;
	case EndReason::shutdown: totals_.ended_shutdown++; break;
	}
	totals_.bytes_a_to_b += ab;
	totals_.bytes_b_to_a += ba;
	rt_->log().debug("Relay {} ended: {}{} ({} + {} bytes)", relay.task, reason_name(reason),
			 reason == EndReason::error ? " " + errno_name(error) : "", ab, ba);

	service::ClientRef client = relay.client;
	std::string request_id = relay.request_id;
	std::vector<UniqueFd> out;
	out.push_back(std::move(fds.first));
	out.push_back(std::move(fds.second));
	for (Unsent *u : {&unsent_ab, &unsent_ba})
		if (u->pipe.is_valid())
			out.push_back(std::move(u->pipe));
	forget(relay); /* relay is gone from here on */
	rt_->deliver(client, "done", fields, std::move(out), request_id);
}

void SplicerService::forget(Relay &relay)
{
	timed_.erase(&relay);
	std::string task = relay.task; /* erase() must not compare against the dying relay's own string */
	relays_.erase(task);
}

void SplicerService::sweep_idle()
{
	if (timed_.empty())
		return;
	auto now = std::chrono::steady_clock::now();
	std::vector<Relay *> expired;
	for (Relay *r : timed_)
		if (now - r->last_activity() >= std::chrono::milliseconds(r->idle_timeout_ms))
			expired.push_back(r);
	for (Relay *r : expired)
		deliver_done(*r, EndReason::idle_timeout, 0, r->release());
}

void SplicerService::fill_status(nlohmann::json &s)
{
	std::uint64_t ab = totals_.bytes_a_to_b, ba = totals_.bytes_b_to_a;
	for (const auto &[id, r] : relays_) {
		ab += r->a_to_b().bytes;
		ba += r->b_to_a().bytes;
	}
	s["tasks"] = relays_.size();
	s["relays"] = {{"active", relays_.size()},
		       {"started", totals_.relays},
		       {"ended", {{"eof", totals_.ended_eof},
				  {"error", totals_.ended_error},
				  {"idle_timeout", totals_.ended_idle},
				  {"cancelled", totals_.ended_cancelled},
				  {"shutdown", totals_.ended_shutdown}}},
		       {"refused", {{"busy", totals_.refused_busy}, {"bad_fds", totals_.refused_bad_fds}}}};
	s["bytes"] = {{"a_to_b", ab}, {"b_to_a", ba}};
	s["pipes"] = {{"in_use", pool_->in_use()},
		      {"idle", pool_->idle()},
		      {"created", pool_->created()},
		      {"size", pool_->pipe_size()}};
	s["splices"] = ctx_.splices;
	s["copies"] = ctx_.copies;
	s["copy_fallbacks"] = ctx_.copy_fallbacks;
}

nlohmann::json SplicerService::list()
{
	nlohmann::json out = nlohmann::json::array();
	std::int64_t now = now_ms();
	for (const auto &[id, r] : relays_) {
		out.push_back({{"task", id},
			       {"owner", r->client.owner.empty() ? nlohmann::json() : nlohmann::json(r->client.owner)},
			       {"age_ms", std::max<std::int64_t>(0, now - r->started_ms)},
			       {"metadata", nlohmann::json::parse(r->metadata, nullptr, false)},
			       {"bytes_a_to_b", r->a_to_b().bytes},
			       {"bytes_b_to_a", r->b_to_a().bytes},
			       {"half_closed", r->a_to_b().finished() || r->b_to_a().finished()}});
	}
	return out;
}

void SplicerService::write_metrics(service::PrometheusWriter &w)
{
	std::uint64_t ab = totals_.bytes_a_to_b, ba = totals_.bytes_b_to_a;
	for (const auto &[id, r] : relays_) {
		ab += r->a_to_b().bytes;
		ba += r->b_to_a().bytes;
	}
	w.gauge("splicer_relays", "relays in progress", static_cast<double>(relays_.size()));
	w.counter("splicer_relays_started_total", "relays accepted", static_cast<double>(totals_.relays));
	for (auto [reason, n] : {std::pair{"eof", totals_.ended_eof}, std::pair{"error", totals_.ended_error},
				 std::pair{"idle_timeout", totals_.ended_idle},
				 std::pair{"cancelled", totals_.ended_cancelled},
				 std::pair{"shutdown", totals_.ended_shutdown}})
		w.counter("splicer_relays_ended_total", "relays ended, by reason", static_cast<double>(n),
			  {{"reason", reason}});
	w.counter("splicer_bytes_total", "bytes relayed", static_cast<double>(ab), {{"direction", "a_to_b"}});
	w.counter("splicer_bytes_total", "bytes relayed", static_cast<double>(ba), {{"direction", "b_to_a"}});
	w.gauge("splicer_pipes_in_use", "pipes holding bytes in flight", static_cast<double>(pool_->in_use()));
	w.gauge("splicer_pipes_idle", "empty pipes kept for reuse", static_cast<double>(pool_->idle()));
	w.counter("splicer_splice_calls_total", "splice() calls that moved bytes", static_cast<double>(ctx_.splices));
	w.counter("splicer_copy_calls_total", "reads on the small-message copy path", static_cast<double>(ctx_.copies));
	w.counter("splicer_copy_fallbacks_total", "times no pipe could be had and a relay copied instead",
		  static_cast<double>(ctx_.copy_fallbacks));
}

void SplicerService::pause()
{
	for (auto &[id, r] : relays_)
		r->pause();
}

void SplicerService::resume()
{
	for (auto &[id, r] : relays_)
		r->resume();
}

void SplicerService::export_items(const std::function<void(service::ExportItem)> &emit)
{
	emit({{{"kind", "splicer"},
	       {"next_task", next_task_},
	       {"totals", {{"relays", totals_.relays}, {"ended_eof", totals_.ended_eof},
			   {"ended_error", totals_.ended_error}, {"ended_idle", totals_.ended_idle},
			   {"ended_cancelled", totals_.ended_cancelled}, {"ended_shutdown", totals_.ended_shutdown},
			   {"bytes_a_to_b", totals_.bytes_a_to_b}, {"bytes_b_to_a", totals_.bytes_b_to_a},
			   {"refused_busy", totals_.refused_busy}, {"refused_bad_fds", totals_.refused_bad_fds}}},
	       {"splices", ctx_.splices},
	       {"copies", ctx_.copies},
	       {"copy_fallbacks", ctx_.copy_fallbacks}},
	      {},
	      false});
	for (auto &[id, r] : relays_) {
		nlohmann::json rec = r->record();
		rec["kind"] = "relay";
		emit({std::move(rec), r->fds()});
	}
}

void SplicerService::abandon()
{
	for (auto &[id, r] : relays_)
		r->abandon();
	timed_.clear();
	relays_.clear();
}

Expected<void, std::string> SplicerService::import_item(service::ImportItem item)
{
	const nlohmann::json &rec = item.record;
	try {
		if (rec.at("kind") == "splicer") {
			next_task_ = rec.at("next_task").get<std::uint64_t>();
			const auto &t = rec.at("totals");
			totals_.relays = t.at("relays");
			totals_.ended_eof = t.at("ended_eof");
			totals_.ended_error = t.at("ended_error");
			totals_.ended_idle = t.at("ended_idle");
			totals_.ended_cancelled = t.at("ended_cancelled");
			totals_.ended_shutdown = t.at("ended_shutdown");
			totals_.bytes_a_to_b = t.at("bytes_a_to_b");
			totals_.bytes_b_to_a = t.at("bytes_b_to_a");
			totals_.refused_busy = t.at("refused_busy");
			totals_.refused_bad_fds = t.at("refused_bad_fds");
			ctx_.splices = rec.at("splices");
			ctx_.copies = rec.at("copies");
			ctx_.copy_fallbacks = rec.at("copy_fallbacks");
			return {};
		}
	} catch (const nlohmann::json::exception &e) {
		return Unexpected(std::string("malformed splicer record: ") + e.what());
	}
	std::string error;
	auto relay = Relay::restore(ctx_, rec, std::move(item.fds), error);
	if (!relay)
		return Unexpected(error);
	std::string task = relay->task;
	relays_.emplace(task, std::move(relay));
	return {};
}

void SplicerService::resume_imported()
{
	start_sweep();
	std::vector<Relay *> failed;
	for (auto &[id, r] : relays_) {
		if (!r->start([this](Relay &rel, EndReason reason, int error) { on_end(rel, reason, error); }))
			failed.push_back(r.get());
		else if (r->idle_timeout_ms)
			timed_.insert(r.get());
	}
	for (Relay *r : failed)
		deliver_done(*r, EndReason::error, EBADF, r->release());
}

void SplicerService::shutdown()
{
	std::size_t n = relays_.size();
	while (!relays_.empty())
		finish(*relays_.begin()->second, EndReason::shutdown);
	if (n)
		rt_->log().info("Handed {} relays back to their owners", n);
}

} // namespace shoal::splicer
