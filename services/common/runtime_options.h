// The config keys and flags every daemon has, and their parsed form.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include <shoal/service/access.h>
#include <shoal/service/listener.h>

#include "mailbox.h"

namespace shoal::service {

class ConfigSchema;

struct RuntimeOptions {
	ControlSocketOptions socket;
	AccessPolicy access;
	std::size_t max_clients = 256;
	std::size_t max_inflight = 64;
	std::size_t client_queue_bytes = 1024 * 1024;
	Mailbox::Limits mailbox;
	std::string metrics_listen;
	std::string upgrade_binary;
	std::chrono::milliseconds upgrade_timeout{30000};
	std::chrono::milliseconds stop_timeout{5000};
};

void add_runtime_options(ConfigSchema &schema, const std::string &daemon);

/* Throws std::runtime_error naming the key on a value that parses but cannot be used. */
RuntimeOptions parse_runtime_options(const nlohmann::json &config);

} // namespace shoal::service
