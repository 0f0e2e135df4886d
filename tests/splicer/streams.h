// Many checksummed byte streams through relays at once, driven by one poll loop, verified byte for byte.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <functional>
#include <string>
#include <vector>

namespace shoal::test {

/* One way of one relay: bytes written to `from` must arrive at `to`, in order, unchanged. */
struct Stream {
	int from = -1;
	int to = -1;
	std::uint64_t seed = 0;
	std::size_t total = 0;
	std::size_t cap = SIZE_MAX; /* send no further than this for now (on_tick may raise it) */
	std::size_t sent = 0;
	std::size_t received = 0;
	bool corrupt = false;
	bool shut = false; /* shutdown(SHUT_WR) sent on `from` after the last byte */
	int error = 0;     /* a send/recv error (ECONNRESET would mean a reset through the relay) */
};

struct StreamResult {
	std::size_t complete = 0;
	std::size_t corrupt = 0;
	std::size_t errors = 0;
	std::uint64_t bytes = 0;
};

/*
 * Pumps every stream until all bytes arrived or timeout; after the last byte of a stream,
 * its `from` is half-closed when half_close is set. on_tick runs between rounds (at most
 * every 10 ms) so a test can upgrade the daemon while bytes flow.
 */
StreamResult run_streams(std::vector<Stream> &streams, std::chrono::milliseconds timeout, bool half_close,
			 const std::function<void()> &on_tick = {});

} // namespace shoal::test
