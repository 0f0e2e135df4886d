// The child that becomes PROGRAM: forked, moved into a new network namespace, configured, then released to exec.
#pragma once

#include <string>
#include <sys/resource.h>
#include <sys/types.h>
#include <vector>

#include <shoal/fdpass/unique_fd.h>

#include "netlink_setup.h"

namespace shoal::tunnel {

struct ChildSpec {
	NetworkSpec network;
	std::vector<std::string> argv; /* PROGRAM and its arguments */
	rlimit nofile{};               /* the RLIMIT_NOFILE PROGRAM gets (the one we were started with) */
};

struct NamespaceChild {
	pid_t pid = -1;
	UniqueFd control; /* our end of the socketpair: the TUN fd came over it, "go" goes back */
	UniqueFd tun;     /* tun0, non-blocking, close-on-exec */
	UniqueFd netns;   /* the namespace itself, so it outlives PROGRAM while flows drain */
};

/*
 * Forks; the child unshares a network namespace (inside a new user namespace when we are
 * not root), calls setup_network(), sends the TUN fd back over a socketpair and blocks
 * until release(). Returns once the TUN fd arrived; on failure returns pid -1 with error
 * set (and the child, if there was one, reaped).
 */
NamespaceChild start_namespace_child(const ChildSpec &spec, std::string &error);

/*
 * Lets the child exec PROGRAM. The child exits 127 (not found) or 126 (not executable)
 * with a message on stderr if exec fails. Closes control.
 */
bool release_child(NamespaceChild &child);

} // namespace shoal::tunnel
