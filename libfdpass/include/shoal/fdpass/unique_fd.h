// UniqueFd: the one owner of a file descriptor; move-only, never converts to int implicitly.
#pragma once

#include <utility>

namespace shoal {

class UniqueFd {
public:
	UniqueFd() = default;
	explicit UniqueFd(int fd) : fd_(fd) {}
	UniqueFd(const UniqueFd &) = delete;
	UniqueFd &operator=(const UniqueFd &) = delete;
	UniqueFd(UniqueFd &&other) noexcept : fd_(other.release()) {}
	UniqueFd &operator=(UniqueFd &&other) noexcept
	{
		reset(other.release());
		return *this;
	}
	~UniqueFd() { reset(); }

	[[nodiscard]] int release() { return std::exchange(fd_, -1); }
	/* Closes the current descriptor (if any) and takes ownership of fd. */
	void reset(int fd = -1);

	int get() const { return fd_; }
	bool is_valid() const { return fd_ >= 0; }

	/* A close-on-exec duplicate (F_DUPFD_CLOEXEC); invalid on failure, errno set. */
	UniqueFd dup() const;

private:
	int fd_ = -1;
};

} // namespace shoal
