// Connector: one non-blocking TCP connect to the upstream, with a timeout, reported once on the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <sys/socket.h>
#include <uv.h>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::proxy {

class Connector {
public:
	/* The connected socket (CLOEXEC, non-blocking), or the errno (ETIMEDOUT for the timeout). */
	using Handler = std::function<void(Result<UniqueFd>)>;

	/*
	 * Starts connecting. An error that shows at once (no socket, no route) is returned here
	 * and the handler is never called; otherwise the handler runs exactly once, from the
	 * loop, unless the Connector is destroyed first (which abandons the connect quietly).
	 */
	static Result<std::unique_ptr<Connector>> start(uv_loop_t *loop, const sockaddr_storage &addr,
							std::uint64_t timeout_ms, Handler on_done);
	~Connector();
	Connector(const Connector &) = delete;
	Connector &operator=(const Connector &) = delete;

	struct Impl; /* outlives the Connector until libuv has released its handles */

private:
	explicit Connector(Impl *impl) : impl_(impl) {}
	Impl *impl_;
};

} // namespace shoal::proxy
