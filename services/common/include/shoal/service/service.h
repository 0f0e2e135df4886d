// The contract between the shared daemon runtime and one daemon's job (splicer, bumblebee, fish).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/fdpass/peer.h>
#include <shoal/fdpass/unique_fd.h>
#include <shoal/proto/envelope.h>

namespace shoal::service {

class ConfigSchema;
class PrometheusWriter;
class Runtime;

/* Where a result goes: the connection that asked, else a connection of the same owner, else the owner's mailbox. */
struct ClientRef {
	std::uint64_t connection = 0;
	std::string owner; /* empty when the client never said hello */

	nlohmann::json to_json() const;
	static ClientRef from_json(const nlohmann::json &j);
};

/* A request for the service. Answer it exactly once, with Runtime::reply or Runtime::fail. */
struct Call {
	ClientRef client;
	proto::Request request;
	std::vector<UniqueFd> fds;
	PeerCredentials peer;
};

/* One piece of state moved to the new process in a live upgrade. fds are borrowed. */
struct ExportItem {
	nlohmann::json record;
	std::vector<int> fds;
	bool is_task = true; /* false for service-wide state: handed_over counts tasks only */
};

/* The same piece of state as the new process receives it, now owning its descriptors. */
struct ImportItem {
	nlohmann::json record;
	std::vector<UniqueFd> fds;
};

class Service {
public:
	virtual ~Service() = default;

	/* Adds the service's own config keys and flags. */
	virtual void add_options(ConfigSchema &) {}
	/* Ops this service answers, beyond the runtime's hello, status, list and upgrade_daemon. */
	virtual std::vector<std::string> ops() const = 0;

	/* Reads the config; may throw (start-up). No kernel resources yet. */
	virtual void init(Runtime &runtime, const nlohmann::json &config) = 0;
	/* A fresh start: create whatever the service owns. May throw (start-up). */
	virtual void start() = 0;

	/* Answers one request; called on the loop, must not throw, must not block. */
	virtual void handle(Call call) = 0;
	/* A client connection is gone (its results now go to its owner's mailbox). */
	virtual void client_closed(std::uint64_t /*connection*/) {}

	virtual void fill_status(nlohmann::json &status) = 0;
	virtual nlohmann::json list() = 0;
	virtual void write_metrics(PrometheusWriter &) = 0;

	/* --- live upgrade, old process --- */
	/* Stop touching every task's descriptors at a safe point; nothing may change until resume or abandon. */
	virtual void pause() = 0;
	/* The upgrade failed: carry on exactly where pause() stopped. */
	virtual void resume() = 0;
	/* Emits every piece of state, in the order import_item must see it. */
	virtual void export_items(const std::function<void(ExportItem)> &emit) = 0;
	/* The new process owns everything now: drop it all with no side effects (no shutdown(), no deletes). */
	virtual void abandon() = 0;

	/* --- live upgrade, new process --- */
	/* Takes one item; must not start any I/O until resume_imported(). */
	virtual Expected<void, std::string> import_item(ImportItem item) = 0;
	/* The old process has let go: start running what was imported. */
	virtual void resume_imported() = 0;

	/* --- stop --- */
	/* SIGTERM: hand every task back to its owner (a done/ended event with its fds). */
	virtual void shutdown() = 0;
};

} // namespace shoal::service
