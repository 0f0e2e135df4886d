// UniqueFd's out-of-line parts: closing and close-on-exec duplication.
#include <shoal/fdpass/unique_fd.h>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace shoal {

void UniqueFd::reset(int fd)
{
	int old = std::exchange(fd_, fd);
	if (old >= 0 && old != fd) {
		/* close() must not be retried on EINTR on Linux: the descriptor is gone either way. */
		int saved = errno;
		::close(old);
		errno = saved;
	}
}

UniqueFd UniqueFd::dup() const
{
	if (fd_ < 0) {
		errno = EBADF;
		return UniqueFd();
	}
	return UniqueFd(::fcntl(fd_, F_DUPFD_CLOEXEC, 3));
}

} // namespace shoal
