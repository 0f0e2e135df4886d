// Relays between an upgraded socket (PROGRAM's flow, terminated by bumblebee) and its upstream: TCP with splice, UDP by datagram.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/unique_fd.h>

#include "pipe_pool.h"

namespace shoal::tunnel {

/* Shared by every relay: the loop, the pipes, one scratch buffer for datagrams and copies. */
struct RelayContext {
	uv_loop_t *loop = nullptr;
	PipePool pipes;
	std::vector<std::uint8_t> scratch = std::vector<std::uint8_t>(65536);
	unsigned budget = 16; /* syscall rounds per direction per wake-up: no relay starves the others */
};

class Relay {
public:
	/*
	 * Called once when the relay ends by itself: error 0 after EOF both ways (TCP) or the
	 * flow's end (UDP), else the errno that ended it. Never called from the constructor or
	 * from close(); the handler may destroy the relay.
	 */
	using EndHandler = std::function<void(int error)>;

	virtual ~Relay();
	/* Polls both sockets and starts relaying; false (nothing started) if libuv refuses. */
	bool start(EndHandler on_end);
	std::uint64_t bytes_up() const { return bytes_up_; }     /* client → upstream */
	std::uint64_t bytes_down() const { return bytes_down_; } /* upstream → client */

protected:
	Relay(RelayContext &ctx, UniqueFd client, UniqueFd upstream, const char *kind);
	/* Computes the wanted event masks from the ways' state and applies them with watch(). */
	virtual void update() = 0;
	virtual void on_event(bool client, int status, int events) = 0;
	/* Applies event masks to the two polls, touching epoll only when a mask changes. */
	void watch(int client_events, int upstream_events);
	/* libuv stopped a poll after an error: forget its mask so the next watch() starts it again. */
	void forget_mask(bool client) { (client ? events_client_ : events_upstream_) = -1; }
	void close_polls();

	RelayContext &ctx_;
	UniqueFd client_, upstream_; /* declared before nothing that outlives them: polls close first (~Relay) */
	bool ended_ = false;
	EndHandler on_end_;
	std::uint64_t bytes_up_ = 0;
	std::uint64_t bytes_down_ = 0;

private:
	struct Poll {
		uv_poll_t handle;
		Relay *relay;
		bool client;
	};
	const char *kind_;
	Poll *poll_client_ = nullptr;
	Poll *poll_upstream_ = nullptr;
	int events_client_ = -1, events_upstream_ = -1;
};

/*
 * TCP: each way splices src → pipe → dst, filling the pipe only when it is empty, so a way
 * waits on exactly one thing — src readable or dst writable — and a slow writer stops its
 * reader (backpressure; at most one pipe per way in flight). EOF is passed on as
 * shutdown(SHUT_WR); the relay ends when both ways have. An error on one side resets the other.
 * With no pipe to be had (out of fds), a way copies through the shared scratch buffer instead.
 */
class TcpRelay final : public Relay {
public:
	TcpRelay(RelayContext &ctx, UniqueFd client, UniqueFd upstream);

private:
	struct Way {
		int src = -1;
		int dst = -1;
		Pipe pipe;
		std::size_t in_pipe = 0;
		std::string pending; /* copy path (no pipe to be had): read, not yet written; at most one scratch */
		std::uint64_t *bytes = nullptr;
		bool eof = false;
		bool shut = false;
		bool want_read = true;
		bool want_write = false;
		bool holds_bytes() const { return in_pipe > 0 || !pending.empty(); }
		bool finished() const { return eof && shut && !holds_bytes(); }
	};

	void on_event(bool client, int status, int events) override;
	int pump(Way &w);
	int copy_once(Way &w);
	void update() override;
	void end(int error, int failed_fd);

	Way up_, down_;
};

/*
 * UDP: datagrams read from one side are sent to the other, one at a time. A datagram the
 * writer refuses (EAGAIN) is kept — one per way — and its reader paused until the writer
 * drains. ICMP errors (ECONNREFUSED) on the upstream drop a datagram, they end nothing.
 * The client side may be SOCK_SEQPACKET (a 0-byte read is its end) or SOCK_DGRAM.
 */
class UdpRelay final : public Relay {
public:
	UdpRelay(RelayContext &ctx, UniqueFd client, UniqueFd upstream);
	std::uint64_t datagrams_dropped() const { return dropped_; }

private:
	struct Way {
		int src = -1;
		int dst = -1;
		bool src_is_seqpacket = false;
		std::vector<std::uint8_t> pending; /* the one datagram dst refused; capacity reused */
		bool has_pending = false;
		std::uint64_t *bytes = nullptr;
	};

	void on_event(bool client, int status, int events) override;
	int pump(Way &w);
	int send_one(Way &w, const std::uint8_t *data, std::size_t len);
	void update() override;
	void end(int error);

	Way up_, down_;
	std::uint64_t dropped_ = 0;
};

} // namespace shoal::tunnel
