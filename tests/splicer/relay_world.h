// Socket plumbing for splicer tests: a client↔a and b↔server connection pair, as a proxy would hold them.
#pragma once

#include <string>
#include <vector>

#include <sys/socket.h>

#include <shoal/fdpass/unique_fd.h>

#include "client.h"
#include "stream_io.h"

namespace shoal::test {

/*
 * Two real connections: client ↔ a (a is the proxy's accepted socket) and b ↔ server (b is the
 * proxy's upstream socket). A relay of (a, b) makes client and server talk.
 */
struct RelayEnds {
	UniqueFd client, a, b, server;
};

/* family: AF_INET (127.0.0.1), AF_INET6 (::1) or AF_UNIX (socketpairs). */
RelayEnds make_relay_ends(int family);

/* Sends splice {metadata} with fds [a, b]; REQUIREs accepted and returns the task. a and b are closed after. */
std::string start_relay(Client &c, RelayEnds &ends, const nlohmann::json &fields = nlohmann::json::object());

/* Deterministic bytes: the same (seed, offset) always give the same byte. */
std::string pattern(std::uint64_t seed, std::size_t offset, std::size_t n);

} // namespace shoal::test
