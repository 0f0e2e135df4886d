// What kind of descriptor a peer handed us: is it a socket, of which family and type, listening?
#pragma once

#include <sys/socket.h>

#include <shoal/expected.h>

namespace shoal {

struct SocketInfo {
	int family = AF_UNSPEC;    /* SO_DOMAIN */
	int type = 0;              /* SO_TYPE: SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, ... */
	int protocol = 0;          /* SO_PROTOCOL */
	bool listening = false;    /* SO_ACCEPTCONN */
};

/* Fails with ENOTSOCK for a descriptor that is not a socket. */
Result<SocketInfo> socket_info(int fd);

/* True when both descriptors refer to the same open file (kcmp, falling back to fstat). */
bool same_file(int a, int b);

} // namespace shoal
