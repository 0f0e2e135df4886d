// Binding the control socket without stealing a live one, and checking one systemd gave us.
#include <shoal/service/listener.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <shoal/fdpass/socket_info.h>

namespace shoal::service {

namespace {

Result<sockaddr_un> make_address(const std::string &path)
{
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path))
		return errno_error(ENAMETOOLONG);
	std::memcpy(addr.sun_path, path.data(), path.size());
	return addr;
}

/* True when something accepts connections at addr right now. */
bool is_live(const sockaddr_un &addr)
{
	UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!probe.is_valid())
		return true; /* cannot tell: be safe and do not remove it */
	int r = ::connect(probe.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof(addr));
	if (r == 0 || errno == EAGAIN || errno == EINPROGRESS)
		return true;
	/* EPROTOTYPE: a stream socket lives there; it is somebody's, not ours to remove. */
	return errno == EPROTOTYPE;
}

} // namespace

Result<UniqueFd> bind_control_socket(const ControlSocketOptions &options)
{
	auto addr = make_address(options.path);
	if (!addr)
		return errno_error(addr.error());

	std::error_code ec;
	std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
	if (!parent.empty())
		std::filesystem::create_directories(parent, ec);

	struct stat st {};
	if (::lstat(options.path.c_str(), &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return errno_error(EEXIST);
		if (is_live(*addr))
			return errno_error(EADDRINUSE);
		if (::unlink(options.path.c_str()) < 0 && errno != ENOENT)
			return errno_error(errno);
	}

	UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!fd.is_valid())
		return errno_error(errno);

	/* Born with no access for others; the final mode is set once it exists. */
	mode_t old_umask = ::umask(0177);
	int r = ::bind(fd.get(), reinterpret_cast<const sockaddr *>(&*addr), sizeof(*addr));
	int bind_errno = errno;
	::umask(old_umask);
	if (r < 0)
		return errno_error(bind_errno);

	if (options.group != static_cast<gid_t>(-1) &&
	    ::chown(options.path.c_str(), static_cast<uid_t>(-1), options.group) < 0) {
		int e = errno;
		::unlink(options.path.c_str());
		return errno_error(e);
	}
	if (::chmod(options.path.c_str(), options.mode) < 0 ||
	    ::listen(fd.get(), options.backlog) < 0) {
		int e = errno;
		::unlink(options.path.c_str());
		return errno_error(e);
	}
	return fd;
}

Result<void> check_control_socket(int fd)
{
	auto info = socket_info(fd);
	if (!info)
		return errno_error(info.error());
	if (info->family != AF_UNIX || info->type != SOCK_SEQPACKET || !info->listening)
		return errno_error(EPROTOTYPE);
	return {};
}

ino_t socket_file_inode(const std::string &path)
{
	struct stat st {};
	if (::lstat(path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode))
		return 0;
	return st.st_ino;
}

void unlink_control_socket(const std::string &path, ino_t inode)
{
	if (inode != 0 && socket_file_inode(path) == inode)
		::unlink(path.c_str());
}

} // namespace shoal::service
