// Send and receive one datagram (bytes + SCM_RIGHTS fds) on a SOCK_SEQPACKET or SOCK_DGRAM socket.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal {

/* The shoal wire protocol's limits (proto/PROTOCOL.md). */
inline constexpr std::size_t kProtocolMaxFds = 4;
inline constexpr std::size_t kProtocolMaxMessage = 64 * 1024;
/* The kernel's own cap on descriptors in one SCM_RIGHTS message (SCM_MAX_FD). */
inline constexpr std::size_t kKernelMaxFds = 253;

struct ReceivedMessage {
	std::string data;
	std::vector<UniqueFd> fds;
	/*
	 * 0, or a per-message problem that left the socket usable:
	 *   EMSGSIZE     the datagram was longer than max_size; data holds its first max_size bytes
	 *   ETOOMANYREFS more than max_fds descriptors, or the kernel truncated the control data
	 *                (MSG_CTRUNC); every descriptor that did arrive has been closed
	 *   EBADMSG      control data other than SCM_RIGHTS arrived; all descriptors closed
	 */
	int error = 0;
};

/*
 * Receives one datagram without blocking (MSG_DONTWAIT) with every descriptor close-on-exec
 * (MSG_CMSG_CLOEXEC). EINTR is retried. Fails with EAGAIN when nothing is queued, with EPIPE
 * on an orderly end of a connected SOCK_SEQPACKET stream, and with the socket's errno on any
 * other failure (after which the socket should be closed).
 */
Result<ReceivedMessage> recv_message(int sock, std::size_t max_size = kProtocolMaxMessage,
				     std::size_t max_fds = kProtocolMaxFds);

/*
 * Sends one datagram without blocking (MSG_DONTWAIT | MSG_NOSIGNAL). The descriptors are
 * borrowed: the kernel duplicates them into the message and the caller keeps its own. EINTR
 * is retried; EAGAIN means the socket's buffer is full. Fails with EMSGSIZE or E2BIG rather
 * than sending a datagram larger than the socket allows or more than kKernelMaxFds fds.
 */
Result<void> send_message(int sock, std::string_view data, std::span<const int> fds = {});

/* Counts this process's open descriptors (/proc/self/fd), for leak checks in tests. */
std::size_t count_open_fds();

} // namespace shoal
