// The live-upgrade socketpair between the old and the new process: JSON records with many fds, with deadlines.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/fdpass/message.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::service {

/* Larger than any protocol message (a record embeds one), within what a 4 MiB socket buffer carries. */
inline constexpr std::size_t kHandoffMaxMessage = 192 * 1024;

struct HandoffRecord {
	nlohmann::json json;
	std::vector<UniqueFd> fds;
};

/*
 * Both processes are paused while they talk over this link, so it blocks (poll with a
 * deadline) instead of going through the loop: simpler, and faster for thousands of records.
 */
class HandoffLink {
public:
	using Clock = std::chrono::steady_clock;

	explicit HandoffLink(UniqueFd sock);

	/* ETIMEDOUT past the deadline, EPIPE when the peer is gone. */
	Result<void> send(const nlohmann::json &record, std::span<const int> fds, Clock::time_point deadline);
	/* EBADMSG for a datagram that is not a JSON object or came with a per-message error. */
	Result<HandoffRecord> recv(Clock::time_point deadline);

	int fd() const { return sock_.get(); }
	UniqueFd &socket() { return sock_; }

private:
	UniqueFd sock_;
};

/* A connected AF_UNIX SOCK_SEQPACKET pair, close-on-exec, with buffers sized for the handoff. */
Result<std::pair<UniqueFd, UniqueFd>> handoff_socketpair();

} // namespace shoal::service
