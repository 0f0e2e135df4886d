// Classifies a descriptor handed to us by a peer before we trust it as a socket of some kind.
#include <shoal/fdpass/socket_info.h>

#include <cerrno>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace shoal {

namespace {

Result<int> int_option(int fd, int option)
{
	int value = 0;
	socklen_t len = sizeof(value);
	if (::getsockopt(fd, SOL_SOCKET, option, &value, &len) < 0)
		return errno_error(errno);
	return value;
}

} // namespace

Result<SocketInfo> socket_info(int fd)
{
	struct stat st {};
	if (::fstat(fd, &st) < 0)
		return errno_error(errno);
	if (!S_ISSOCK(st.st_mode))
		return errno_error(ENOTSOCK);

	SocketInfo info;
	auto family = int_option(fd, SO_DOMAIN);
	auto type = int_option(fd, SO_TYPE);
	auto protocol = int_option(fd, SO_PROTOCOL);
	auto listening = int_option(fd, SO_ACCEPTCONN);
	if (!family)
		return errno_error(family.error());
	if (!type)
		return errno_error(type.error());
	info.family = *family;
	info.type = *type;
	info.protocol = protocol ? *protocol : 0;
	info.listening = listening && *listening != 0;
	return info;
}

bool same_file(int a, int b)
{
	pid_t self = ::getpid();
	long r = ::syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);
	if (r >= 0)
		return r == 0;
	/* Without kcmp (seccomp, CONFIG_KCMP=n) fall back to the inode, which sockets also have. */
	struct stat sa {}, sb {};
	if (::fstat(a, &sa) < 0 || ::fstat(b, &sb) < 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

} // namespace shoal
