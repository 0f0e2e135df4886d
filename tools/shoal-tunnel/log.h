// Plain stderr logging for shoal-tunnel: "shoal-tunnel: message", filtered by one global level.
#pragma once

#include <string>

namespace shoal::tunnel {

enum class LogLevel { debug, info, warn, error, silent };

/* --quiet raises the level to warn, --verbose lowers it to debug; info is the default. */
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);

/*
 * printf-style, one line per call. stderr is shared with PROGRAM, so every line names us.
 * Never throws: a log line must not take down the loop.
 */
void log(LogLevel level, const char *format, ...) noexcept __attribute__((format(printf, 2, 3)));

#define TLOG_DEBUG(...) (::shoal::tunnel::log_enabled(::shoal::tunnel::LogLevel::debug) ? ::shoal::tunnel::log(::shoal::tunnel::LogLevel::debug, __VA_ARGS__) : (void)0)
#define TLOG_INFO(...) ::shoal::tunnel::log(::shoal::tunnel::LogLevel::info, __VA_ARGS__)
#define TLOG_WARN(...) ::shoal::tunnel::log(::shoal::tunnel::LogLevel::warn, __VA_ARGS__)
#define TLOG_ERROR(...) ::shoal::tunnel::log(::shoal::tunnel::LogLevel::error, __VA_ARGS__)

/* "ECONNRESET"-style name of an errno value (what reports and logs carry). */
std::string errno_text(int error);

} // namespace shoal::tunnel
