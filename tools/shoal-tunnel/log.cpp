// Plain stderr logging for shoal-tunnel: one formatted line per call, written with one write(2).
#include "log.h"

#include <cstdarg>
#include <cstdio>
#include <unistd.h>

#include <shoal/proto/messages.h>

namespace shoal::tunnel {

namespace {
LogLevel g_level = LogLevel::info;
}

void set_log_level(LogLevel level)
{
	g_level = level;
}

bool log_enabled(LogLevel level)
{
	return level >= g_level && g_level != LogLevel::silent;
}

void log(LogLevel level, const char *format, ...) noexcept
{
	if (!log_enabled(level))
		return;
	/* One write() per line so our lines do not interleave mid-line with PROGRAM's output. */
	char line[2048];
	static const char *const prefix[] = {"shoal-tunnel: debug: ", "shoal-tunnel: ",
					     "shoal-tunnel: warning: ", "shoal-tunnel: error: ", ""};
	int n = std::snprintf(line, sizeof line, "%s", prefix[static_cast<int>(level)]);
	va_list ap;
	va_start(ap, format);
	int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, format, ap);
	va_end(ap);
	std::size_t len = static_cast<std::size_t>(n) + (m < 0 ? 0 : static_cast<std::size_t>(m));
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	ssize_t w = ::write(STDERR_FILENO, line, len);
	(void)w;
}

std::string errno_text(int error)
{
	try {
		return proto::errno_name(error);
	} catch (...) {
		return "E?";
	}
}

} // namespace shoal::tunnel
