// SplicerClient: the proxy's one connection to splicer — hello, splice, replies, done events, reconnects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include <nlohmann/json.hpp>

#include <shoal/fdpass/channel.h>
#include <shoal/fdpass/unique_fd.h>
#include <shoal/proto/messages.h>

namespace shoal::proxy {

struct SplicerSettings {
	std::string socket_path;
	std::string owner;
	std::optional<std::uint64_t> idle_timeout_ms;
	std::uint64_t reconnect_min_ms = 50;
	std::uint64_t reconnect_max_ms = 2000;
	std::uint64_t hello_timeout_ms = 10000;
};

/* What became of one splice request. */
struct SpliceOutcome {
	enum class Kind {
		accepted, /* splicer holds the relay now: task is set */
		refused,  /* splicer answered with an error: error is set */
		lost,     /* the connection dropped first: lost_error is its errno; the relay may or may not exist */
	};
	Kind kind = Kind::lost;
	std::string task;
	proto::ErrorReply error;
	int lost_error = 0;
};

class SplicerClient {
public:
	struct Handlers {
		/* Connected and welcomed; mailbox results follow as on_done calls. */
		std::function<void(std::uint64_t mailbox)> on_ready;
		/* The connection was lost (or never made); a retry is scheduled after retry_ms. */
		std::function<void(int error, std::uint64_t retry_ms, bool was_ready)> on_down;
		/* A relay ended; fds are [a, b], ours to close. */
		std::function<void(proto::Done done, std::vector<UniqueFd> fds)> on_done;
	};
	using SpliceCallback = std::function<void(const SpliceOutcome &)>;

	SplicerClient(uv_loop_t *loop, SplicerSettings settings, Handlers handlers);
	~SplicerClient();
	SplicerClient(const SplicerClient &) = delete;
	SplicerClient &operator=(const SplicerClient &) = delete;

	/* Starts connecting (and reconnecting after every loss, until stop()). */
	void start();
	/*
	 * Reads whatever splicer already sent (so results it wrote to this connection are not
	 * lost with it), then closes the connection and stops reconnecting. Splices still
	 * awaiting a reply are reported lost (ESHUTDOWN).
	 */
	void stop();

	bool ready() const { return state_ == State::ready; }

	/*
	 * Sends splice with fds [a, b]. The sockets are kept until the reply (PROTOCOL.md §5) and
	 * closed after the callback, whatever the outcome: on success splicer holds its own
	 * copies. Returns 0 when sent (the callback follows exactly once), else an errno
	 * (ENOTCONN: not ready; ENOBUFS: the queue to splicer is full), with both sockets closed
	 * and no callback.
	 */
	int splice(nlohmann::json metadata, UniqueFd a, UniqueFd b, SpliceCallback on_outcome);

	/* Splices sent and not yet answered. */
	std::size_t awaiting() const { return awaiting_.size(); }

private:
	enum class State { idle, backoff, hello, ready, stopped };

	struct Awaiting {
		UniqueFd a, b;
		SpliceCallback on_outcome;
	};

	void try_connect();
	void connection_lost(int error);
	void schedule_retry(int error, bool was_ready);
	void on_message(ReceivedMessage msg);
	void handle_reply(proto::Reply reply, std::vector<UniqueFd> fds);
	void fail_awaiting(int error);
	std::string next_id(const char *prefix);

	static void retry_cb(uv_timer_t *timer);
	static void hello_timeout_cb(uv_timer_t *timer);

	uv_loop_t *loop_;
	SplicerSettings settings_;
	Handlers handlers_;
	State state_ = State::idle;
	std::unique_ptr<Channel> channel_;
	/* Timers live on the heap: their memory must outlive us until libuv's close callback. */
	uv_timer_t *retry_timer_;
	uv_timer_t *hello_timer_;
	std::uint64_t backoff_ms_;
	std::uint64_t counter_ = 0;
	std::string hello_id_;
	bool hello_refusal_logged_ = false;
	std::map<std::string, Awaiting> awaiting_;
};

} // namespace shoal::proxy
