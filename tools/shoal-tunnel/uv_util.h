// Small libuv helpers: exception-proof callbacks and closing heap-allocated handles.
#pragma once

#include <cstdint>
#include <exception>
#include <utility>

#include <uv.h>

#include "log.h"

namespace shoal::tunnel {

/*
 * Runs f and swallows what it throws: an exception unwinding through libuv's C frames is
 * undefined behaviour. What we lose is one flow's bookkeeping, logged; the loop carries on.
 */
template <typename F>
void guarded(const char *where, F &&f) noexcept
{
	try {
		std::forward<F>(f)();
	} catch (const std::exception &e) {
		log(LogLevel::error, "%s: %s", where, e.what());
	} catch (...) {
		log(LogLevel::error, "%s: unknown exception", where);
	}
}

/* Closes a handle allocated with new and deletes it once libuv has let go of it. */
template <typename Handle>
void close_and_delete(Handle *handle)
{
	if (!handle)
		return;
	auto *h = reinterpret_cast<uv_handle_t *>(handle);
	if (uv_is_closing(h))
		return;
	uv_close(h, [](uv_handle_t *closed) { delete reinterpret_cast<Handle *>(closed); });
}

} // namespace shoal::tunnel
