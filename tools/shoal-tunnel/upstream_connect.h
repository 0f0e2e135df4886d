// Connector: a non-blocking TCP connect to the upstream with a timeout, reported once on the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <sys/socket.h>
#include <uv.h>

#include <shoal/fdpass/unique_fd.h>

namespace shoal::tunnel {

class Connector {
public:
	/* error 0 and a connected socket, or an errno (ETIMEDOUT after the timeout). */
	using Done = std::function<void(int error, UniqueFd sock)>;

	/*
	 * Starts connecting; done is called exactly once, always later from the loop (never from
	 * inside start), unless the Connector is destroyed first. done may destroy the Connector.
	 */
	static std::unique_ptr<Connector> start(uv_loop_t *loop, const sockaddr_storage &to,
						std::uint64_t timeout_ms, Done done);
	~Connector();
	Connector(const Connector &) = delete;
	Connector &operator=(const Connector &) = delete;

private:
	Connector() = default;
	void finish(int error);
	static void poll_cb(uv_poll_t *handle, int status, int events);
	static void timer_cb(uv_timer_t *handle);

	UniqueFd sock_;
	uv_poll_t *poll_ = nullptr;
	uv_timer_t *timer_ = nullptr;
	int early_error_ = 0; /* connect() failed at once: reported by a zero timer */
	bool finished_ = false;
	Done done_;
};

/* A UDP socket connected to `to` (connect() on UDP does not wait); errno on failure. */
UniqueFd connect_udp(const sockaddr_storage &to, int &error);

/* Sets TCP_NODELAY: a relay must not add Nagle's delay to PROGRAM's small writes. */
void set_nodelay(int fd);

/* Arms SO_LINGER {1, 0}: the next close() sends a RST, so the peer sees a reset, not an EOF. */
void set_reset_on_close(int fd);

} // namespace shoal::tunnel
