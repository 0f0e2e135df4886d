// The runtime's own config keys: socket, access, limits, mailbox, metrics, upgrade.
#include "runtime_options.h"

#include <grp.h>
#include <pwd.h>
#include <stdexcept>
#include <unistd.h>

#include <shoal/service/config.h>

namespace shoal::service {

namespace {

std::optional<std::string> check_log_level(const nlohmann::json &v)
{
	static const char *levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
	for (const char *l : levels)
		if (v == l)
			return std::nullopt;
	return "must be one of trace, debug, info, warn, error, critical, off";
}

std::optional<uid_t> user_id(const std::string &s)
{
	if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos)
		return static_cast<uid_t>(std::stoul(s));
	if (struct passwd *pw = ::getpwnam(s.c_str()))
		return pw->pw_uid;
	return std::nullopt;
}

std::optional<gid_t> group_id(const std::string &s)
{
	if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos)
		return static_cast<gid_t>(std::stoul(s));
	if (struct group *gr = ::getgrnam(s.c_str()))
		return gr->gr_gid;
	return std::nullopt;
}

std::optional<std::string> check_users(const nlohmann::json &v)
{
	for (const auto &e : v)
		if (!user_id(e.get<std::string>()))
			return "no user named \"" + e.get<std::string>() + "\"";
	return std::nullopt;
}

std::optional<std::string> check_groups(const nlohmann::json &v)
{
	for (const auto &e : v)
		if (!group_id(e.get<std::string>()))
			return "no group named \"" + e.get<std::string>() + "\"";
	return std::nullopt;
}

std::optional<std::string> check_positive(const nlohmann::json &v)
{
	if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0)
		return "must be a positive integer";
	return std::nullopt;
}

std::optional<std::string> check_mode(const nlohmann::json &v)
{
	const std::string s = v.get<std::string>();
	if (s.empty() || s.size() > 4 || s.find_first_not_of("01234567") != std::string::npos)
		return "must be an octal mode such as \"0660\"";
	return std::nullopt;
}

} // namespace

void add_runtime_options(ConfigSchema &schema, const std::string &daemon)
{
	schema.add({"socket", "/run/shoal/" + daemon + ".sock",
		    "control socket path (ignored when systemd passes the socket)", "--socket", "PATH"});
	schema.add({"log_level", "info", "trace, debug, info, warn, error, critical or off",
		    "--log-level", "LEVEL", false, check_log_level});
	schema.add({"socket_mode", "0660", "file mode of the control socket, octal", "", "", false, check_mode});
	schema.add({"socket_group", "", "group owning the control socket (empty: the daemon's own)"});
	schema.add({"allow.users", nlohmann::json::array(),
		    "users (names or uids) allowed to connect, besides root and the daemon's own user",
		    "--allow-user", "USER", true, check_users});
	schema.add({"allow.groups", nlohmann::json::array(),
		    "groups (names or gids) whose members, by primary group, may connect",
		    "--allow-group", "GROUP", true, check_groups});
	schema.add({"limits.max_clients", 256u, "connected clients at once; more are refused with busy",
		    "", "", false, check_positive});
	schema.add({"limits.max_inflight", 64u, "unanswered requests per client; more are refused with busy",
		    "", "", false, check_positive});
	schema.add({"limits.client_queue_bytes", 1048576u,
		    "bytes queued to a client that does not read; past half of it, its requests wait",
		    "", "", false, check_positive});
	schema.add({"mailbox.max_owners", 1024u, "owners with results waiting at once", "", "", false,
		    check_positive});
	schema.add({"mailbox.max_messages", 4096u, "results waiting per owner", "", "", false,
		    check_positive});
	schema.add({"mailbox.ttl_ms", 300000u,
		    "how long a result waits for its owner to reconnect before its fds are closed",
		    "", "", false, check_positive});
	schema.add({"metrics.listen", "",
		    "Prometheus text metrics at http://ADDRESS/metrics, e.g. 127.0.0.1:9101 (empty: off)",
		    "--metrics", "ADDRESS"});
	schema.add({"upgrade.binary", "/proc/self/exe",
		    "the binary a live upgrade starts (point it at the installed path for real upgrades)",
		    "--upgrade-binary", "PATH"});
	schema.add({"upgrade.timeout_ms", 30000u,
		    "how long the new process may take to become ready and take over", "", "", false,
		    check_positive});
	schema.add({"stop_timeout_ms", 5000u,
		    "on SIGTERM, how long to wait for results to reach their clients", "", "", false,
		    check_positive});
}

RuntimeOptions parse_runtime_options(const nlohmann::json &c)
{
	RuntimeOptions o;
	o.socket.path = c["socket"].get<std::string>();
	o.socket.mode = static_cast<mode_t>(std::stoul(c["socket_mode"].get<std::string>(), nullptr, 8));
	if (auto g = c["socket_group"].get<std::string>(); !g.empty()) {
		struct group *gr = ::getgrnam(g.c_str());
		if (!gr)
			throw std::runtime_error("socket_group: no group named \"" + g + "\"");
		o.socket.group = gr->gr_gid;
	}
	o.access.self = ::getuid();
	for (const auto &u : c["allow"]["users"])
		if (auto id = user_id(u.get<std::string>()))
			o.access.uids.push_back(*id);
	for (const auto &g : c["allow"]["groups"])
		if (auto id = group_id(g.get<std::string>()))
			o.access.gids.push_back(*id);
	o.max_clients = c["limits"]["max_clients"].get<std::size_t>();
	o.max_inflight = c["limits"]["max_inflight"].get<std::size_t>();
	o.client_queue_bytes = c["limits"]["client_queue_bytes"].get<std::size_t>();
	o.mailbox.max_owners = c["mailbox"]["max_owners"].get<std::size_t>();
	o.mailbox.max_messages = c["mailbox"]["max_messages"].get<std::size_t>();
	o.mailbox.ttl = std::chrono::milliseconds(c["mailbox"]["ttl_ms"].get<std::uint64_t>());
	o.metrics_listen = c["metrics"]["listen"].get<std::string>();
	o.upgrade_binary = c["upgrade"]["binary"].get<std::string>();
	o.upgrade_timeout = std::chrono::milliseconds(c["upgrade"]["timeout_ms"].get<std::uint64_t>());
	o.stop_timeout = std::chrono::milliseconds(c["stop_timeout_ms"].get<std::uint64_t>());
	return o;
}

} // namespace shoal::service
