// One datagram with SCM_RIGHTS descriptors: the checked receive path and the send path.
#include <shoal/fdpass/message.h>

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace shoal {

namespace {

/* SCM_PIDFD (Linux 6.5); Debian 12's headers predate it. */
constexpr int kScmPidfd = 0x04;

/*
 * Closes every descriptor in every SCM_RIGHTS header and reports whether anything other than
 * SCM_RIGHTS arrived. Walking all headers matters: a sender may split fds over several.
 */
bool take_fds(msghdr &msg, std::vector<UniqueFd> &out)
{
	bool foreign = false;
	for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == kScmPidfd &&
		    c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			/* SO_PASSPIDFD on our socket: a descriptor too, and ours to close. */
			int fd;
			std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
			UniqueFd close_it(fd);
			foreign = true;
			continue;
		}
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			foreign = true;
			continue;
		}
		std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *p = CMSG_DATA(c);
		for (std::size_t i = 0; i < n; i++) {
			int fd;
			std::memcpy(&fd, p + i * sizeof(int), sizeof(int));
			out.emplace_back(fd);
		}
	}
	return foreign;
}

} // namespace

Result<ReceivedMessage> recv_message(int sock, std::size_t max_size, std::size_t max_fds)
{
	ReceivedMessage m;
	/*
	 * One reusable buffer per thread: sizing m.data to max_size for every datagram would
	 * zero-fill (and, past the mmap threshold, map and unmap) 64 KiB or more per message.
	 */
	thread_local std::vector<char> scratch;
	if (scratch.size() < max_size)
		scratch.resize(max_size);

	/*
	 * Room for one more descriptor than allowed, so "too many" is seen as a count rather
	 * than only as MSG_CTRUNC; either way everything that arrived is closed.
	 */
	std::size_t room = max_fds + 1;
	std::vector<char> control(CMSG_SPACE(room * sizeof(int)));

	iovec iov{scratch.data(), max_size};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.data();
	msg.msg_controllen = control.size();

	ssize_t n;
	do {
		n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno_error(errno);

	bool foreign = take_fds(msg, m.fds);

	if (n == 0 && m.fds.empty() && !foreign && !(msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
		int type = 0;
		socklen_t len = sizeof(type);
		if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type != SOCK_DGRAM)
			return errno_error(EPIPE);
	}

	m.data.assign(scratch.data(), static_cast<std::size_t>(n));
	if ((msg.msg_flags & MSG_CTRUNC) || m.fds.size() > max_fds) {
		m.fds.clear();
		m.error = ETOOMANYREFS;
	} else if (foreign) {
		m.fds.clear();
		m.error = EBADMSG;
	} else if (msg.msg_flags & MSG_TRUNC) {
		m.error = EMSGSIZE;
	}
	return m;
}

Result<void> send_message(int sock, std::string_view data, std::span<const int> fds)
{
	if (fds.size() > kKernelMaxFds)
		return errno_error(E2BIG);

	iovec iov{const_cast<char *>(data.data()), data.size()};
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;

	std::vector<char> control;
	if (!fds.empty()) {
		control.resize(CMSG_SPACE(fds.size() * sizeof(int)));
		msg.msg_control = control.data();
		msg.msg_controllen = control.size();
		cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
		std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
	}

	ssize_t n;
	do {
		n = ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno_error(errno);
	/* Datagram sockets send all or nothing; a short count means a stream socket was passed. */
	if (static_cast<std::size_t>(n) != data.size())
		return errno_error(EPROTOTYPE);
	return {};
}

std::size_t count_open_fds()
{
	DIR *d = ::opendir("/proc/self/fd");
	if (!d)
		return 0;
	std::size_t n = 0;
	while (dirent *e = ::readdir(d)) {
		if (e->d_name[0] != '.')
			n++;
	}
	::closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

} // namespace shoal
