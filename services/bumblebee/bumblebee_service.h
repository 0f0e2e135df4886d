// BumblebeeService: the bumblebee daemon's job on the shared runtime: upgrade IP flows to kernel sockets and pump them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <shoal/packet/packet.h>
#include <shoal/service/runtime.h>

#include "flow.h"
#include "netns.h"
#include "slot_pool.h"

namespace shoal::bumblebee {

class BumblebeeService final : public service::Service {
public:
	BumblebeeService();
	~BumblebeeService() override;

	void add_options(service::ConfigSchema &schema) override;
	std::vector<std::string> ops() const override { return {"upgrade", "confirm"}; }
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
	/* requests (upgrade.cpp) */
	void handle_upgrade(service::Call &call);
	void handle_confirm(service::Call &call);
	/* Reads the flow's first packet; false when it has not arrived yet. */
	bool take_first_packet(Flow &f);
	void begin_tcp(Flow &f, packet::Packet &syn);
	void begin_udp(Flow &f, packet::Packet &first);
	/* Records the flow's addresses and keeps its first packet (for the confirm, a RST, an ICMP error). */
	void keep_first(Flow &f, const packet::Packet &first);
	/* With confirm: sends syn and waits; false when the flow goes straight on. */
	bool hold_for_confirm(Flow &f);
	void size_send_buffer(int fd);
	void accept_flow(Flow &f);
	void reject_flow(Flow &f);
	/* Answers a flow's upgrade with an error; the flow is gone afterwards. */
	void refuse(Flow &f, proto::ErrorCode code, const std::string &message);
	void deliver_upgraded(Flow &f, UniqueFd socket);

	/* packet paths (pump.cpp) */
	void on_flow_event(Flow &f, int status, int events);
	void on_payload_event(Flow &f, int status, int events);
	void on_tun_readable();
	void on_listener_readable(int listener);
	void from_client(Flow &f, std::uint8_t *buf, std::size_t len);
	void inject(Flow &f, packet::Packet &p);
	/* Follows ACKs and FINs of one packet; true when the flow is over (RST, or FIN both ways acknowledged). */
	bool track(Flow &f, const packet::Packet &p, bool from_client);
	void flush_to_clients();
	/* 0, or the errno of a send that failed (the packet is counted as dropped). */
	int send_to_client(Flow &f, const std::uint8_t *buf, std::size_t len);
	/* RST at seq (and at other too, if also and it differs) toward the kernel or the client. */
	void send_rsts(Flow &f, bool to_kernel, std::uint32_t seq, bool also, std::uint32_t other);
	void rst_to_kernel(Flow &f);
	void rst_to_client(Flow &f);
	void refuse_client(Flow &f); /* RST (TCP) or ICMP port unreachable (UDP) to the client */

	/* lifecycle (bumblebee_service.cpp) */
	Flow *add_flow(std::unique_ptr<Flow> f);
	bool watch(Flow &f);
	/* Ends a flow now: ended event, slot held down, sockets closed. */
	void end(Flow &f, proto::EndReason reason, int error = 0);
	/* Ends a flow once the current packet batch has been written out. */
	void end_later(Flow &f, proto::EndReason reason, int error = 0);
	void run_deferred_ends();
	void sweep();
	SlotPool *pool_for(int family) { return family == AF_INET ? pool4_.get() : pool6_.get(); }
	const packet::Endpoint &listener_for(int family) const { return family == AF_INET ? listen4_ : listen6_; }
	std::uint64_t now() const { return uv_now(rt_->loop()); }
	void start_polls();
	/* A poll of the TUN or a listener reported an error: log it and retry from sweep(). */
	void poll_failed(const char *what, int status);

	service::Runtime *rt_ = nullptr;
	NetnsConfig ns_config_;
	Netns ns_;
	Poll tun_poll_, listen4_poll_, listen6_poll_;
	uv_timer_t *sweep_timer_ = nullptr;
	packet::Endpoint listen4_, listen6_;
	std::unique_ptr<SlotPool> pool4_, pool6_;

	std::unordered_map<std::string, std::unique_ptr<Flow>> flows_;
	std::unordered_map<packet::Endpoint, Flow *, packet::EndpointHash> by_slot_;
	std::unordered_set<Flow *> pending_; /* not upgraded yet: they have a deadline */
	struct DeferredEnd {
		Flow *flow;
		proto::EndReason reason;
		int error;
	};
	std::vector<DeferredEnd> deferred_;
	bool in_batch_ = false;
	bool accepts_paused_ = false; /* out of descriptors, or a poll error: sweep() resumes the polls */

	/* Packet buffers: one batch of flow-socket reads or TUN reads at a time. */
	static constexpr std::size_t kBatch = 16;
	static constexpr std::size_t kBufSize = 65536;
	std::vector<std::uint8_t> buffers_;
	struct Outgoing {
		Flow *flow;
		std::uint8_t *data;
		std::size_t len;
	};
	std::vector<Outgoing> outgoing_;

	std::size_t max_flows_ = 100000;
	std::size_t max_pending_ = 10000;
	unsigned sweeps_ = 0;
	std::uint64_t default_timeout_ms_ = 10000;
	std::uint64_t idle_timeout_ms_ = 7200000;
	std::uint64_t udp_idle_timeout_ms_ = 120000;
	std::uint64_t hold_down_ms_ = 60000;
	int sndbuf_ = 4 << 20;
	std::uint64_t next_task_ = 1;

	struct Counters {
		std::uint64_t upgrades = 0, upgraded = 0;
		std::uint64_t ended_eof = 0, ended_error = 0, ended_timeout = 0, ended_rejected = 0,
			      ended_shutdown = 0;
		std::uint64_t refused_busy = 0, refused_bad_fds = 0, refused_bad_first = 0, refused_exhausted = 0;
		std::uint64_t packets_out = 0, bytes_out = 0, packets_in = 0, bytes_in = 0;
		std::uint64_t drop_malformed = 0, drop_foreign = 0, drop_no_flow = 0, drop_icmp = 0,
			      drop_congested = 0, drop_tun_write = 0, drop_held = 0;
		std::uint64_t accepted_orphans = 0, rsts_sent = 0;
		nlohmann::json to_json() const;
		void from_json(const nlohmann::json &j);
	} counters_;
};

} // namespace shoal::bumblebee
