// shoal-proxy's options, described once for --help, --print-config, --config FILE and the flags.
#include "config.h"

#include <unistd.h>

#include <shoal/proto/address.h>
#include <shoal/proto/messages.h>

#include "shoal_version.h"

namespace shoal::proxy {

using nlohmann::json;
using service::check_unsigned_range;
using service::ConfigSchema;
using service::Option;
using service::OptionType;

namespace {

std::optional<std::string> check_endpoint_text(const json &v)
{
	if (!v.is_string() || proto::parse_endpoint(v.get<std::string>()))
		return std::nullopt;
	return "must be an endpoint like 127.0.0.1:8080 or [::1]:8080";
}

service::OptionCheck check_endpoint()
{
	return [](const json &v) -> std::optional<std::string> {
		if (v.is_array()) {
			for (const json &e : v)
				if (auto err = check_endpoint_text(e))
					return err;
			return std::nullopt;
		}
		return check_endpoint_text(v);
	};
}

bool owner_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

Endpoint endpoint_of(const std::string &text)
{
	Endpoint e;
	e.addr = *proto::parse_endpoint(text);
	/* Written back canonically so "[::0001]:80" and "[::1]:80" log the same. */
	e.text = proto::format_endpoint(e.addr);
	return e;
}

} // namespace

service::ProgramInfo program_info()
{
	return {
		.name = "shoal-proxy",
		.version = SHOAL_VERSION,
		.summary = "The thin reference proxy: accepts TCP clients, connects each to the upstream "
			   "and hands both sockets to splicer, which relays them.",
		.description =
			"Once splicer has accepted a connection the proxy keeps nothing of it: the proxy can\n"
			"exit or restart while the relay goes on. When a relay ends, splicer sends both\n"
			"sockets back to the proxy's owner (to a restarted proxy, from its mailbox); the proxy\n"
			"then writes one JSON audit line with the relay's byte counts and TCP_INFO.\n"
			"While splicer is unreachable, new clients are closed rather than held.\n"
			"SIGTERM/SIGINT: stop accepting and exit 0 (relays go on); SIGHUP: reopen the audit log.\n",
	};
}

ConfigSchema config_schema()
{
	ConfigSchema s;
	s.add({.key = "listen",
	       .default_value = json::array(),
	       .comment = "Where to accept clients, ADDR:PORT or [ADDR6]:PORT (repeatable; required)",
	       .flag = "--listen",
	       .metavar = "ADDR:PORT",
	       .check = check_endpoint()});
	s.add({.key = "upstream",
	       .default_value = nullptr,
	       .comment = "The server every client is connected to, ADDR:PORT or [ADDR6]:PORT (required)",
	       .flag = "--upstream",
	       .metavar = "ADDR:PORT",
	       .check = check_endpoint()});
	s.add({.key = "splicer.socket",
	       .default_value = nullptr,
	       .comment = "splicer's control socket (required)",
	       .flag = "--splicer",
	       .metavar = "PATH",
	       .check = service::check_not_empty()});
	s.add({.key = "owner",
	       .default_value = nullptr,
	       .comment = "The name this proxy says hello as; a restarted proxy with the same owner "
			  "receives the relays its predecessor started (default shoal-proxy@HOSTNAME)",
	       .flag = "--owner",
	       .metavar = "NAME",
	       .check = [](const json &v) -> std::optional<std::string> {
		       if (v.is_null() || (v.is_string() && valid_owner(v.get<std::string>())))
			       return std::nullopt;
		       return "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -";
	       }});
	s.add(service::log_level_option());
	s.add({.key = "audit_log",
	       .default_value = nullptr,
	       .comment = "Append one JSON line per finished relay to FILE (default: the log, at info)",
	       .flag = "--audit-log",
	       .metavar = "FILE",
	       .check = service::check_not_empty()});
	s.add({.key = "listen_backlog",
	       .default_value = 1024u,
	       .comment = "listen(2) backlog of each listening socket",
	       .check = check_unsigned_range(1, 65535)});
	s.add({.key = "limits.max_pending_connects",
	       .default_value = 1024u,
	       .comment = "Clients held at once while their upstream connect is in progress or splicer "
			  "has not yet accepted them; more are closed at once",
	       .flag = "--max-pending",
	       .metavar = "N",
	       .check = check_unsigned_range(1, 1000000)});
	s.add({.key = "connect_timeout_ms",
	       .default_value = 5000u,
	       .comment = "How long an upstream connect may take before the client is closed",
	       .flag = "--connect-timeout",
	       .metavar = "MS",
	       .check = check_unsigned_range(1, 600000)});
	s.add({.key = "splicer.idle_timeout_ms",
	       .default_value = nullptr,
	       .comment = "idle_timeout_ms asked for each relay (default: splicer's own)",
	       .check = check_unsigned_range(1, proto::kMaxIdleTimeoutMs),
	       .type = OptionType::Unsigned});
	s.add({.key = "splicer.reconnect_min_ms",
	       .default_value = 50u,
	       .comment = "First delay before reconnecting to splicer; doubles on each failure",
	       .check = check_unsigned_range(1, 600000)});
	s.add({.key = "splicer.reconnect_max_ms",
	       .default_value = 2000u,
	       .comment = "Longest delay between attempts to reconnect to splicer",
	       .check = check_unsigned_range(1, 600000)});
	s.add({.key = "splicer.hello_timeout_ms",
	       .default_value = 10000u,
	       .comment = "How long splicer may take to answer hello before the proxy reconnects",
	       .check = check_unsigned_range(1, 600000)});
	s.add({.key = "shutdown_grace_ms",
	       .default_value = 2000u,
	       .comment = "On SIGTERM, how long clients already accepted may take to be handed to splicer",
	       .check = check_unsigned_range(0, 600000)});
	return s;
}

bool valid_owner(const std::string &name)
{
	if (name.empty() || name.size() > proto::kMaxOwnerLength)
		return false;
	for (char c : name)
		if (!owner_char(c))
			return false;
	return true;
}

std::string default_owner()
{
	char host[256] = {};
	if (::gethostname(host, sizeof host - 1) != 0 || !host[0])
		return "shoal-proxy@localhost";
	std::string owner = "shoal-proxy@";
	for (const char *p = host; *p; p++)
		owner += owner_char(*p) ? *p : '-';
	if (owner.size() > proto::kMaxOwnerLength)
		owner.resize(proto::kMaxOwnerLength);
	return owner;
}

Expected<ProxyConfig, std::string> load_config(const json &config)
{
	using service::config_value;
	try {
		ProxyConfig c;
		const json &listen = config_value(config, "listen");
		if (!listen.is_array() || listen.empty())
			return Unexpected(std::string("--listen ADDR:PORT is required"));
		for (const json &l : listen)
			c.listen.push_back(endpoint_of(l.get<std::string>()));

		const json &upstream = config_value(config, "upstream");
		if (upstream.is_null())
			return Unexpected(std::string("--upstream ADDR:PORT is required"));
		c.upstream = endpoint_of(upstream.get<std::string>());
		if (proto::endpoint_port(c.upstream.addr) == 0)
			return Unexpected(std::string("--upstream: port 0 cannot be connected to"));

		const json &splicer = config_value(config, "splicer.socket");
		if (splicer.is_null())
			return Unexpected(std::string("--splicer PATH is required"));
		c.splicer_socket = splicer.get<std::string>();
		/* sun_path holds 107 bytes and a NUL. */
		if (c.splicer_socket.size() > 107)
			return Unexpected(std::string("--splicer: path longer than 107 bytes"));

		const json &owner = config_value(config, "owner");
		c.owner = owner.is_null() ? default_owner() : owner.get<std::string>();
		c.log_level = config_value(config, "log_level").get<std::string>();
		if (const json &a = config_value(config, "audit_log"); !a.is_null())
			c.audit_log = a.get<std::string>();
		c.listen_backlog = config_value(config, "listen_backlog").get<unsigned>();
		c.max_pending_connects = config_value(config, "limits.max_pending_connects").get<std::size_t>();
		c.connect_timeout_ms = config_value(config, "connect_timeout_ms").get<std::uint64_t>();
		if (const json &i = config_value(config, "splicer.idle_timeout_ms"); !i.is_null())
			c.idle_timeout_ms = i.get<std::uint64_t>();
		c.reconnect_min_ms = config_value(config, "splicer.reconnect_min_ms").get<std::uint64_t>();
		c.reconnect_max_ms = config_value(config, "splicer.reconnect_max_ms").get<std::uint64_t>();
		if (c.reconnect_max_ms < c.reconnect_min_ms)
			c.reconnect_max_ms = c.reconnect_min_ms;
		c.hello_timeout_ms = config_value(config, "splicer.hello_timeout_ms").get<std::uint64_t>();
		c.shutdown_grace_ms = config_value(config, "shutdown_grace_ms").get<std::uint64_t>();
		return c;
	} catch (const std::exception &e) {
		/* The schema checked every value; this is only reached by a bug or bad_alloc. */
		return Unexpected(std::string(e.what()));
	}
}

} // namespace shoal::proxy
