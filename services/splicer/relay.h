// Relay: two connected stream sockets, bytes moved both ways with splice(2) (or copied, when small).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <uv.h>

#include <shoal/fdpass/unique_fd.h>
#include <shoal/service/service.h>

#include "pipe_pool.h"

namespace shoal::splicer {

struct RelayConfig {
	std::size_t splice_len = 512 * 1024; /* bytes asked of one splice() into a pipe */
	std::size_t bulk_read = 16384;       /* a copy read this full switches a direction to splice */
	unsigned small_splices = 4;          /* this many small splices in a row switch back to copying */
	unsigned budget = 16;                /* syscall rounds per wake-up, so one relay cannot starve others */
};

/* Shared by every relay: the pool, the settings and the counters. */
struct RelayContext {
	uv_loop_t *loop = nullptr;
	PipePool *pool = nullptr;
	RelayConfig config;
	std::uint64_t splices = 0;        /* splice() calls that moved bytes */
	std::uint64_t copies = 0;         /* recv()/send() rounds on the copy path */
	std::uint64_t copy_fallbacks = 0; /* wanted a pipe, none could be had */
};

/* One way of a relay: src → dst. */
struct Direction {
	int src = -1;
	int dst = -1;
	std::optional<Pipe> pipe;
	std::size_t in_pipe = 0;    /* bytes sitting in the pipe (read from src, not yet written) */
	std::string pending;        /* copy path: read from src, not yet written; empty when idle */
	std::uint64_t bytes = 0;    /* written to dst */
	unsigned small = 0;         /* consecutive small splices */
	bool splice_mode = false;
	bool eof = false;           /* src said EOF */
	bool shut = false;          /* dst got shutdown(SHUT_WR) */
	bool want_read = true;
	bool want_write = false;

	bool finished() const { return eof && shut; }
	bool holds_bytes() const { return in_pipe > 0 || !pending.empty(); }
};

enum class EndReason { eof, error, idle_timeout, cancelled, shutdown };

/* Bytes a relay had read but could not write when it was cancelled: a pipe holding them. */
struct Unsent {
	UniqueFd pipe; /* read end; the write end is closed, so the reader sees EOF after them */
	std::size_t bytes = 0;
};

class Relay {
public:
	/* Called once when the relay ends by itself (eof, error); never from inside start(). */
	using EndHandler = std::function<void(Relay &, EndReason, int error)>;

	Relay(RelayContext &ctx, UniqueFd a, UniqueFd b);
	~Relay();
	Relay(const Relay &) = delete;
	Relay &operator=(const Relay &) = delete;

	/* Starts polling (a fresh relay, or one restored after an upgrade). */
	bool start(EndHandler on_end);
	/* Stops polling at a safe point: every byte is in a socket, a pipe or pending. */
	void pause();
	void resume();

	/*
	 * Ends the relay for cancel/stop: flushes what can be written without blocking and hands
	 * what is left over in pipes, so nothing that was read is lost. Returns both sockets.
	 */
	std::pair<UniqueFd, UniqueFd> finish(Unsent &a_to_b, Unsent &b_to_a);
	/* Ends the relay after eof/error: returns both sockets; bytes left in pipes are dropped. */
	std::pair<UniqueFd, UniqueFd> release();
	/* The new process owns everything: stop polling and forget the fds without closing them in a way that matters. */
	void abandon();

	/* For the live upgrade: the record and the fds, in the order restore() takes them. */
	nlohmann::json record() const;
	std::vector<int> fds() const;
	static std::unique_ptr<Relay> restore(RelayContext &ctx, const nlohmann::json &record,
					      std::vector<UniqueFd> fds, std::string &error);

	std::chrono::steady_clock::time_point last_activity() const { return last_activity_; }
	const Direction &a_to_b() const { return ab_; }
	const Direction &b_to_a() const { return ba_; }
	int a() const { return a_.get(); }
	int b() const { return b_.get(); }

	/* Service bookkeeping, kept here so one allocation holds a relay. */
	std::string task;
	service::ClientRef client;
	std::string request_id;
	std::string metadata; /* compact JSON, returned verbatim */
	std::uint64_t idle_timeout_ms = 0;
	std::int64_t started_ms = 0; /* wall clock, for duration_ms across upgrades */

private:
	struct Poll {
		uv_poll_t handle;
		Relay *relay;
		bool is_a;
	};

	void on_event(bool is_a, int status, int events);
	/* Moves what it can one way; returns 0 or an errno that ends the relay. */
	int pump(Direction &d);
	int flush(Direction &d);
	int read_splice(Direction &d);
	int read_copy(Direction &d);
	void release_pipe(Direction &d, bool may_hold_bytes);
	void update();
	void stop_polls();
	void end(EndReason reason, int error);

	RelayContext &ctx_;
	UniqueFd a_, b_;
	Direction ab_, ba_;
	Poll *poll_a_ = nullptr;
	Poll *poll_b_ = nullptr;
	int events_a_ = -1, events_b_ = -1;
	bool paused_ = false;
	bool ended_ = false;
	EndHandler on_end_;
	std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

} // namespace shoal::splicer
