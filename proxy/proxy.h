// Proxy: ties listeners, upstream connects, the splicer connection and the audit log together on one loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include "audit.h"
#include "config.h"
#include "listener.h"
#include "splicer_client.h"
#include "upstream.h"
#include "util.h"

namespace shoal::proxy {

class Proxy {
public:
	Proxy(uv_loop_t *loop, ProxyConfig config);
	~Proxy();
	Proxy(const Proxy &) = delete;
	Proxy &operator=(const Proxy &) = delete;

	/* Opens the audit log and the listeners and starts talking to splicer; the error otherwise. */
	std::optional<std::string> start();

	/*
	 * Stops accepting; clients already accepted are still connected upstream and handed to
	 * splicer for up to shutdown_grace_ms (then closed); then disconnects and calls on_stopped.
	 * A second call cuts the wait short. Relays already accepted live on in splicer.
	 */
	void stop(std::function<void()> on_stopped);

	/* SIGHUP: reopen the audit log. */
	void reopen_audit();

private:
	/* A client between accept and the upstream connect's outcome. */
	struct Connecting {
		UniqueFd client;
		std::string client_text;
		std::int64_t accepted_at_ms = 0;
		std::unique_ptr<Connector> connector;
	};

	void on_accept(UniqueFd client, const sockaddr_storage &peer);
	void on_upstream(std::uint64_t n, Result<UniqueFd> upstream);
	void hand_over(std::uint64_t n, Result<UniqueFd> upstream);
	void maybe_finish_stop();
	void on_splice_outcome(const std::string &client, const SpliceOutcome &outcome);
	void refuse_unreachable(const std::string &client);
	void on_splicer_ready(std::uint64_t mailbox);
	void on_splicer_down(int error, std::uint64_t retry_ms, bool was_ready);
	void on_done(proto::Done done, std::vector<UniqueFd> fds);
	void finish_stop();
	std::size_t pending() const;

	static void grace_cb(uv_timer_t *timer);

	uv_loop_t *loop_;
	ProxyConfig cfg_;
	std::vector<std::unique_ptr<Listener>> listeners_;
	std::unique_ptr<SplicerClient> splicer_;
	std::unique_ptr<Audit> audit_;
	std::map<std::uint64_t, Connecting> connecting_;
	std::uint64_t next_conn_ = 0;

	/* One outage: from losing splicer (or starting without it) until the next welcome. */
	bool outage_logged_ = false;
	bool refusal_logged_ = false;
	std::uint64_t refused_in_outage_ = 0;
	std::uint64_t outage_started_ms_ = 0;

	LogLimiter full_log_, upstream_log_, refused_log_, lost_log_;

	bool stopping_ = false;
	bool stopped_ = false;
	std::function<void()> on_stopped_;
	uv_timer_t *grace_timer_ = nullptr;

	std::uint64_t clients_ = 0, spliced_ = 0, done_ = 0;
};

} // namespace shoal::proxy
