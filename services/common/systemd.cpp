// Thin wrappers over libsystemd's sd-daemon calls; each is harmless without systemd.
#include <shoal/service/systemd.h>

#include <cstdlib>
#include <fcntl.h>
#include <string>

#include <systemd/sd-daemon.h>

namespace shoal::service {

namespace {

bool notify(const std::string &state)
{
	return ::sd_notify(0, state.c_str()) > 0;
}

} // namespace

bool notify_ready(const std::string &status)
{
	return notify(status.empty() ? "READY=1" : "READY=1\nSTATUS=" + status);
}

bool notify_status(const std::string &status) { return notify("STATUS=" + status); }

bool notify_reloading()
{
	struct timespec ts {};
	::clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
				  static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
	return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

bool notify_stopping() { return notify("STOPPING=1"); }
bool notify_watchdog() { return notify("WATCHDOG=1"); }
bool notify_handed_over(pid_t pid)
{
	return notify("MAINPID=" + std::to_string(pid) + "\nREADY=1\nSTATUS=handed over to pid " + std::to_string(pid));
}

std::optional<std::chrono::microseconds> watchdog_interval()
{
	uint64_t usec = 0;
	if (::sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return std::nullopt;
	return std::chrono::microseconds(usec);
}

std::vector<ActivatedSocket> take_activated_sockets()
{
	std::vector<ActivatedSocket> out;
	char **names = nullptr;
	int n = ::sd_listen_fds_with_names(1, &names);
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		::fcntl(fd, F_SETFD, FD_CLOEXEC);
		out.push_back({UniqueFd(fd), names && names[i] ? names[i] : "unknown"});
	}
	if (names) {
		for (int i = 0; i < n; i++)
			std::free(names[i]);
		std::free(names);
	}
	return out;
}

} // namespace shoal::service
