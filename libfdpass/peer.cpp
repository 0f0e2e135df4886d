// Peer credentials of a Unix socket: SO_PEERCRED, and SO_PEERPIDFD on kernels that have it.
#include <shoal/fdpass/peer.h>

#include <cerrno>
#include <sys/socket.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace shoal {

Result<PeerCredentials> peer_credentials(int sock)
{
	ucred cred{};
	socklen_t len = sizeof(cred);
	if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return errno_error(errno);
	return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

Result<UniqueFd> peer_pidfd(int sock)
{
	int fd = -1;
	socklen_t len = sizeof(fd);
	/* The kernel creates the pidfd with O_CLOEXEC. */
	if (::getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) < 0)
		return errno_error(errno);
	return UniqueFd(fd);
}

} // namespace shoal
