// Listener: one listening TCP socket on the loop, handing each accepted client (CLOEXEC, non-blocking) on.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <sys/socket.h>
#include <uv.h>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::proxy {

class Listener {
public:
	using AcceptHandler = std::function<void(UniqueFd client, const sockaddr_storage &peer)>;

	/* Binds and listens (SO_REUSEADDR; IPv6 sockets are V6ONLY); accepting starts at once. */
	static Result<std::unique_ptr<Listener>> open(uv_loop_t *loop, const sockaddr_storage &addr,
						      int backlog, AcceptHandler on_accept);
	~Listener();
	Listener(const Listener &) = delete;
	Listener &operator=(const Listener &) = delete;

	/* Stops accepting and closes the socket (once libuv lets go of it). Idempotent. */
	void close();

	/* The bound address, with the real port when port 0 was asked for. */
	const std::string &local() const { return local_; }

	struct Impl; /* outlives the Listener until libuv has released its handles */

private:
	Listener(Impl *impl, std::string local) : impl_(impl), local_(std::move(local)) {}
	Impl *impl_;
	std::string local_;
};

} // namespace shoal::proxy
