// BumblebeeLink: our one connection to bumblebee — hello as the owner, requests queued across reconnects, results handed on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/channel.h>
#include <shoal/fdpass/unique_fd.h>
#include <shoal/proto/envelope.h>

namespace shoal::tunnel {

struct LinkSettings {
	std::string socket_path;
	std::string owner;
	std::uint64_t reconnect_min_ms = 20;
	std::uint64_t reconnect_max_ms = 1000;
	std::uint64_t hello_timeout_ms = 5000;
	std::size_t max_backlog = 16384; /* requests waiting for a connection (or room in its queue) */
};

/*
 * bumblebee's live upgrade keeps our socket open (the new process inherits it), so nothing
 * happens here then. If bumblebee closes the connection (a crash, a restart), we reconnect
 * with backoff and say hello as the same owner: results of tasks started on the old
 * connection arrive through the mailbox after welcome, with the ids we gave them. Requests
 * are never failed on a loss: those that had left may still be answered (through the
 * mailbox), those that had not are sent after the next welcome.
 */
class BumblebeeLink {
public:
	struct Handlers {
		/* welcome arrived; mailbox results follow as on_message calls */
		std::function<void(std::uint64_t mailbox)> on_ready;
		/* the connection was lost or could not be made; a retry follows */
		std::function<void(int error, bool was_ready)> on_down;
		/* every other message: replies, results, errors (fds are ours) */
		std::function<void(proto::Reply reply, std::vector<UniqueFd> fds)> on_message;
	};

	BumblebeeLink(uv_loop_t *loop, LinkSettings settings, Handlers handlers);
	~BumblebeeLink();
	BumblebeeLink(const BumblebeeLink &) = delete;
	BumblebeeLink &operator=(const BumblebeeLink &) = delete;

	void start();
	/* Reads what bumblebee already sent (results would die with the socket), then closes for good. */
	void stop();

	bool ready() const { return state_ == State::ready; }
	/*
	 * Sends now when connected and welcomed, else keeps it for the next welcome. False when
	 * the backlog is full: the message (and its fds) is dropped.
	 */
	bool send(OutMessage message);
	std::size_t backlog() const { return backlog_.size(); }

private:
	enum class State { idle, backoff, hello, ready, stopped };

	void try_connect();
	void lost(int error);
	void schedule_retry(int error, bool was_ready);
	void flush();
	void on_datagram(ReceivedMessage msg);

	uv_loop_t *loop_;
	LinkSettings settings_;
	Handlers handlers_;
	State state_ = State::idle;
	std::unique_ptr<Channel> channel_;
	uv_timer_t *retry_timer_;
	uv_timer_t *hello_timer_;
	uv_timer_t *flush_timer_; /* the channel's queue was full: try the backlog again shortly */
	std::uint64_t backoff_ms_;
	std::uint64_t hellos_ = 0;
	std::string hello_id_;
	std::string hello_data_;
	bool refusal_logged_ = false;
	std::deque<OutMessage> backlog_;
};

} // namespace shoal::tunnel
