// shoal-proxy's settings: the command-line/config-file schema and the checked values the proxy runs with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/service/config.h>

namespace shoal::proxy {

struct Endpoint {
	sockaddr_storage addr{};
	std::string text; /* canonical "ip:port" / "[ipv6]:port", as metadata and logs show it */
};

struct ProxyConfig {
	std::vector<Endpoint> listen;
	Endpoint upstream;
	std::string splicer_socket;
	std::string owner;
	std::string log_level;
	std::optional<std::string> audit_log; /* none: audit lines go to the log at info */
	unsigned listen_backlog = 1024;
	std::size_t max_pending_connects = 1024;
	std::uint64_t connect_timeout_ms = 5000;
	std::optional<std::uint64_t> idle_timeout_ms; /* none: splicer's own default */
	std::uint64_t reconnect_min_ms = 50;
	std::uint64_t reconnect_max_ms = 2000;
	std::uint64_t hello_timeout_ms = 10000;
	std::uint64_t shutdown_grace_ms = 2000;
};

service::ProgramInfo program_info();
service::ConfigSchema config_schema();

/* "shoal-proxy@<hostname>", the hostname cut to what an owner may contain. */
std::string default_owner();

/* True when name is 1..128 bytes of [A-Za-z0-9._:@-] (PROTOCOL.md §8). */
bool valid_owner(const std::string &name);

/* Checks what the schema cannot (required flags, endpoints, owner); the error reads "--flag: …". */
Expected<ProxyConfig, std::string> load_config(const nlohmann::json &config);

} // namespace shoal::proxy
