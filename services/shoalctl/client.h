// A blocking shoal protocol client: shoalctl, the tests and simple tools use it; proxies use libfdpass's Channel.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal {

struct ClientMessage {
	nlohmann::json json;
	std::vector<UniqueFd> fds;

	bool is_error() const { return json.value("op", "") == "error"; }
	std::string op() const { return json.value("op", ""); }
};

class Client {
public:
	using Clock = std::chrono::steady_clock;

	/* Connects to a daemon's control socket (AF_UNIX SOCK_SEQPACKET). */
	static Result<Client> connect(const std::string &path);
	explicit Client(UniqueFd sock) : sock_(std::move(sock)) {}

	/* Sends {"v":1,"op":op,"id":<fresh>,…fields} with borrowed fds; returns the id used. */
	Result<std::string> send(const std::string &op, const nlohmann::json &fields = nlohmann::json::object(),
				 std::span<const int> fds = {});
	/* Sends raw bytes as one datagram (for tests of malformed input). */
	Result<void> send_raw(std::string_view bytes, std::span<const int> fds = {});

	/* The next message of any kind; ETIMEDOUT after timeout, EPIPE when the daemon closed. */
	Result<ClientMessage> receive(std::chrono::milliseconds timeout);
	/*
	 * The reply to id, keeping any other message (events such as done) for next_event().
	 * A reply may be an error message; that is still a successful receive.
	 */
	Result<ClientMessage> wait_reply(const std::string &id, std::chrono::milliseconds timeout);
	/* The next event that is not a reply to a request we are waiting for. */
	Result<ClientMessage> next_event(std::chrono::milliseconds timeout);

	/* send + wait_reply. */
	Result<ClientMessage> call(const std::string &op, const nlohmann::json &fields = nlohmann::json::object(),
				   std::span<const int> fds = {},
				   std::chrono::milliseconds timeout = std::chrono::seconds(10));

	int fd() const { return sock_.get(); }

private:
	UniqueFd sock_;
	unsigned next_id_ = 1;
	std::vector<ClientMessage> pending_;
};

} // namespace shoal
