// Tunnel: shoal-tunnel's loop — PROGRAM's lifetime, its flows' upgrades, bumblebee's answers, upstream relays, the end.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/socket.h>
#include <uv.h>

#include <shoal/proto/messages.h>

#include "bumblebee_link.h"
#include "flow.h"
#include "flow_table.h"
#include "namespace_child.h"
#include "options.h"
#include "report.h"
#include "tun_device.h"
#include "upstream_relay.h"

namespace shoal::tunnel {

/* shoal-tunnel failed before PROGRAM could run (like env(1) and timeout(1)). */
inline constexpr int kExitSetupFailed = 125;

class Tunnel {
public:
	Tunnel(uv_loop_t *loop, const Options &options, NamespaceChild child, Report &report,
	       std::size_t max_flows);
	~Tunnel();
	Tunnel(const Tunnel &) = delete;
	Tunnel &operator=(const Tunnel &) = delete;

	/* Runs the loop until PROGRAM has exited and everything is closed; returns our exit status. */
	int run();
	std::uint64_t duration_ms() const;
	/* PROGRAM was allowed to start (false: we failed or were stopped before it ran). */
	bool program_started() const { return program_started_; }

private:
	/*
	 * starting: waiting for bumblebee's first welcome before PROGRAM may run;
	 * running: PROGRAM runs; draining: PROGRAM exited, flows get drain_ms to finish;
	 * closing: everything closed, waiting briefly for the last ended events; done.
	 */
	enum class Phase { starting, running, draining, closing, done };

	/* bumblebee */
	void on_link_ready(std::uint64_t mailbox);
	void on_link_down(int error, bool was_ready);
	void on_message(proto::Reply reply, std::vector<UniqueFd> fds);
	void on_upgraded(const proto::Reply &reply, std::vector<UniqueFd> fds);
	void on_syn(const proto::Reply &reply);
	void on_ended(const proto::Reply &reply);
	void on_error_reply(const proto::Reply &reply);
	void send_upgrade(Flow &flow);
	void send_confirm(Flow &flow, bool accept);

	/* packets */
	void on_new_flow(Flow &flow);
	void on_socket_closed(Flow &flow, int error);

	/* upstream */
	bool upstream_address(const Flow &flow, const proto::Flow *announced, sockaddr_storage &to);
	void connect_upstream(Flow &flow, const proto::Flow *announced, bool for_confirm);
	void on_upstream(Flow &flow, int error, UniqueFd sock, bool for_confirm);
	void start_relay(Flow &flow, UniqueFd client, UniqueFd upstream);
	void on_relay_end(Flow &flow, int error);
	void take_relay_counts(Flow &flow);

	/* lifecycle */
	void fail_flow(Flow &flow, const char *reason, const std::string &error, bool refuse);
	void maybe_erase(Flow &flow);
	void sweep();
	void on_signal(int signum);
	void reap_child();
	void begin_drain();
	bool drained() const;
	void check_drained();
	void close_all();
	void finish();
	/* An awaited ended arrived while closing: true if it was the last one (we finish next). */
	bool last_ended_arrived();
	static void drain_timer_cb(uv_timer_t *timer);
	static void closing_timer_cb(uv_timer_t *timer);

	uv_loop_t *loop_;
	const Options &options_;
	NamespaceChild child_;
	Report &report_;
	Counters &counters_;
	std::size_t max_flows_;
	std::uint64_t start_ms_;
	Phase phase_ = Phase::starting;
	bool child_exited_ = false;
	bool program_started_ = false;
	int exit_status_ = kExitSetupFailed;
	bool setup_failed_ = false;
	int setup_status_ = kExitSetupFailed; /* 128+N when a signal N stopped us before PROGRAM ran */
	int last_link_error_ = 0;
	std::size_t awaiting_ended_ = 0;
	std::uint64_t closing_deadline_ms_ = 0;

	RelayContext relay_ctx_;
	std::unique_ptr<TunDevice> tun_;
	std::unique_ptr<BumblebeeLink> link_;
	std::unique_ptr<FlowTable> table_;
	/* Every flow's record by request id: ended events can arrive after the flow is gone. */
	std::unordered_map<std::string, FlowRecord *> records_;

	uv_timer_t *sweep_timer_ = nullptr;
	uv_timer_t *phase_timer_ = nullptr; /* startup deadline, drain deadline, closing grace */
	std::vector<uv_signal_t *> signals_;
};

} // namespace shoal::tunnel
