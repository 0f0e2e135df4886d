// systemd integration: sd_notify state, watchdog timing and socket activation, all optional.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <shoal/fdpass/unique_fd.h>

namespace shoal::service {

/* No-ops (returning false) when NOTIFY_SOCKET is unset: the daemon runs the same without systemd. */
bool notify_ready(const std::string &status = {});
bool notify_status(const std::string &status);
bool notify_reloading();
bool notify_stopping();
bool notify_watchdog();
/* One message: pid is now the unit's main process and the reload is over (the live upgrade's last step). */
bool notify_handed_over(pid_t pid);

/* The watchdog interval systemd expects pings within, if WatchdogSec= is set for us. */
std::optional<std::chrono::microseconds> watchdog_interval();

struct ActivatedSocket {
	UniqueFd fd;
	std::string name; /* FileDescriptorName=, "unknown" when unnamed */
};

/*
 * Takes the sockets systemd passed (LISTEN_FDS/LISTEN_FDNAMES), makes them close-on-exec and
 * clears the variables so no child inherits them. Empty when not socket-activated.
 */
std::vector<ActivatedSocket> take_activated_sockets();

} // namespace shoal::service
