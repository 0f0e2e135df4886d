// The runtime every shoal daemon runs on: one libuv loop, the control socket, clients, the mailbox and upgrades.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <shoal/fdpass/unique_fd.h>
#include <shoal/proto/envelope.h>
#include <shoal/service/service.h>

namespace shoal::service {

struct ProgramInfo;

class Runtime {
public:
	virtual ~Runtime() = default;

	virtual uv_loop_t *loop() = 0;
	virtual spdlog::logger &log() = 0;

	/* Answers call's request with {op, …fields} and optional fds (ownership passes to the runtime). */
	virtual void reply(const ClientRef &client, const std::string &id, std::string_view op,
			   const nlohmann::json &fields, std::vector<UniqueFd> fds = {}) = 0;
	/* Answers call's request with an error; its fds (if still held by the caller) should just be dropped. */
	virtual void fail(const ClientRef &client, const std::string &id, proto::ErrorCode code,
			  std::string_view message) = 0;
	/* An event that is not a reply (done, ended, syn): same routing, no in-flight accounting. */
	virtual void deliver(const ClientRef &client, std::string_view op, const nlohmann::json &fields,
			     std::vector<UniqueFd> fds = {}, const std::string &id = {}) = 0;

	/*
	 * The request will be answered much later (bumblebee's upgrade waits for a handshake): stop
	 * counting it against limits.max_inflight now. Its answer must then go through deliver()
	 * or deliver_error(), never reply() or fail().
	 */
	virtual void detach(const ClientRef &client) = 0;
	/* A late error for a detached request: to its connection if still open, else dropped (and counted). */
	virtual void deliver_error(const ClientRef &client, const std::string &id, proto::ErrorCode code,
				   std::string_view message) = 0;

	virtual bool client_connected(std::uint64_t connection) const = 0;
};

/*
 * The whole of a daemon's main(): parses the command line (common flags plus the service's),
 * sets up logging, then either starts fresh (binding or adopting the control socket) or, when
 * started by a live upgrade, takes over from its predecessor; serves until SIGTERM, SIGINT or
 * a completed upgrade. Returns the process exit code.
 */
int run_daemon(const ProgramInfo &info, std::unique_ptr<Service> service, int argc, char **argv);

} // namespace shoal::service
