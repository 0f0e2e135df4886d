// The control socket: bound by the daemon itself (safely) or taken over from systemd.
#pragma once

#include <string>

#include <sys/types.h>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::service {

struct ControlSocketOptions {
	std::string path;
	mode_t mode = 0660;
	gid_t group = static_cast<gid_t>(-1); /* -1: leave the group alone */
	int backlog = 512;
};

/*
 * Binds a listening AF_UNIX SOCK_SEQPACKET socket (close-on-exec, non-blocking) at path,
 * creating the parent directory if needed. A socket file nobody listens on any more is
 * replaced; a live one is refused with EADDRINUSE; a file that is not a socket is refused
 * with EEXIST and never removed.
 */
Result<UniqueFd> bind_control_socket(const ControlSocketOptions &options);

/* Fails with EPROTOTYPE unless fd is a listening AF_UNIX SOCK_SEQPACKET socket. */
Result<void> check_control_socket(int fd);

/* The inode of the socket file at path (0 if none), to recognise our own file later. */
ino_t socket_file_inode(const std::string &path);

/* Removes path only while it is still the file we bound (inode), never a successor's. */
void unlink_control_socket(const std::string &path, ino_t inode);

} // namespace shoal::service
