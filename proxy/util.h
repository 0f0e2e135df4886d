// Small helpers shared by the proxy's parts: clocks, exception-proof callbacks, log rate limiting.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include <uv.h>

#include <shoal/service/log.h>

namespace shoal::proxy {

/* Wall-clock milliseconds since the epoch: what audit lines and metadata carry. */
inline std::int64_t wall_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

/*
 * Runs f and swallows whatever it throws: an exception unwinding through libuv's C frames is
 * undefined behaviour, and a proxy that loses one connection's bookkeeping is better than
 * one that aborts with every pending client.
 */
template <typename F>
void guarded(const char *where, F &&f) noexcept
{
	try {
		std::forward<F>(f)();
	} catch (const std::exception &e) {
		try {
			service::logger("proxy")->error("{}: {}", where, e.what());
		} catch (...) {
		}
	} catch (...) {
		try {
			service::logger("proxy")->error("{}: unknown exception", where);
		} catch (...) {
		}
	}
}

/*
 * One log line per interval for a repeating event (a flood of refused clients must not
 * become a flood of log lines); the lines in between are counted and reported with the next.
 */
class LogLimiter {
public:
	explicit LogLimiter(std::uint64_t interval_ms = 1000) : interval_ms_(interval_ms) {}

	/* Returns true when a line should be written now; suppressed() says how many were skipped. */
	bool allow(uv_loop_t *loop)
	{
		std::uint64_t now = uv_now(loop);
		if (logged_ && now - last_ms_ < interval_ms_) {
			suppressed_++;
			return false;
		}
		logged_ = true;
		last_ms_ = now;
		return true;
	}
	/* The count of skipped lines, reset by reading it. */
	std::uint64_t take_suppressed() { return std::exchange(suppressed_, 0); }

private:
	std::uint64_t interval_ms_;
	std::uint64_t last_ms_ = 0;
	std::uint64_t suppressed_ = 0;
	bool logged_ = false;
};

/* " (N similar suppressed)" or "", for LogLimiter lines. */
inline std::string suppressed_note(std::uint64_t n)
{
	return n ? " (" + std::to_string(n) + " similar suppressed)" : std::string();
}

} // namespace shoal::proxy
