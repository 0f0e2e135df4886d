// Who is on the other end of a Unix socket: SO_PEERCRED and, where the kernel has it, SO_PEERPIDFD.
#pragma once

#include <sys/types.h>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal {

struct PeerCredentials {
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
};

/* The credentials the peer had when it connected (or created the socketpair). */
Result<PeerCredentials> peer_credentials(int sock);

/*
 * A pidfd for the peer process (Linux 6.5+). ENOPROTOOPT: the kernel is older; EINVAL (6.5 to
 * 6.15): the peer has exited and been reaped.
 */
Result<UniqueFd> peer_pidfd(int sock);

} // namespace shoal
