// Descriptor checks shared by the libfdpass tests, counted independently of libfdpass itself.
#pragma once

#include <cerrno>
#include <cstddef>
#include <dirent.h>
#include <fcntl.h>

#include <catch.hpp>

namespace fdtest {

/* This process's open descriptors, from /proc/self/fd. */
inline std::size_t open_fds()
{
	DIR *dir = opendir("/proc/self/fd");
	REQUIRE(dir != nullptr);
	std::size_t n = 0;
	while (const dirent *e = readdir(dir))
		if (e->d_name[0] != '.')
			++n;
	closedir(dir);
	return n - 1; /* the directory stream's own descriptor */
}

inline bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

inline bool is_cloexec(int fd)
{
	const int flags = fcntl(fd, F_GETFD);
	REQUIRE(flags != -1);
	return (flags & FD_CLOEXEC) != 0;
}

} // namespace fdtest
