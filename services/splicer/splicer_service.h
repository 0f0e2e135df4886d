// SplicerService: the splicer daemon's job on the shared runtime: accept socket pairs, relay, hand back.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <shoal/service/runtime.h>

#include "pipe_pool.h"
#include "relay.h"

namespace shoal::splicer {

class SplicerService final : public service::Service {
public:
	SplicerService();
	~SplicerService() override;

	void add_options(service::ConfigSchema &schema) override;
	std::vector<std::string> ops() const override { return {"splice", "cancel"}; }
	void init(service::Runtime &rt, const nlohmann::json &config) override;
	void start() override;
	void handle(service::Call call) override;

	void fill_status(nlohmann::json &status) override;
	nlohmann::json list() override;
	void write_metrics(service::PrometheusWriter &w) override;

	void pause() override;
	void resume() override;
	void export_items(const std::function<void(service::ExportItem)> &emit) override;
	void abandon() override;
	Expected<void, std::string> import_item(service::ImportItem item) override;
	void resume_imported() override;
	void shutdown() override;

private:
	void handle_splice(service::Call &call);
	void handle_cancel(service::Call &call);
	void on_end(Relay &relay, EndReason reason, int error);
	/* Ends a relay for cancel or stop: both sockets and any unsent bytes go back to its owner. */
	void finish(Relay &relay, EndReason reason);
	void deliver_done(Relay &relay, EndReason reason, int error, std::pair<UniqueFd, UniqueFd> fds,
			  Unsent unsent_ab = {}, Unsent unsent_ba = {});
	void forget(Relay &relay);
	void sweep_idle();
	void start_sweep();

	service::Runtime *rt_ = nullptr;
	std::unique_ptr<PipePool> pool_;
	RelayContext ctx_;
	std::unordered_map<std::string, std::unique_ptr<Relay>> relays_;
	std::unordered_set<Relay *> timed_; /* relays with an idle timeout */
	uv_timer_t *sweep_ = nullptr;

	std::size_t max_relays_ = 100000;
	std::uint64_t default_idle_timeout_ms_ = 0;
	std::uint64_t next_task_ = 1;

	struct Totals {
		std::uint64_t relays = 0;
		std::uint64_t ended_eof = 0, ended_error = 0, ended_idle = 0, ended_cancelled = 0, ended_shutdown = 0;
		std::uint64_t bytes_a_to_b = 0, bytes_b_to_a = 0; /* of relays that ended */
		std::uint64_t refused_busy = 0, refused_bad_fds = 0;
	} totals_;
};

} // namespace shoal::splicer
