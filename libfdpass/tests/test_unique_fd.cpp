// UniqueFd against real descriptors: ownership, moves, release/reset, CLOEXEC dup, no leaks.
#include "fd_checks.h"
#include <catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include <shoal/fdpass/unique_fd.h>

using shoal::UniqueFd;

static_assert(!std::is_copy_constructible_v<UniqueFd>);
static_assert(!std::is_copy_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_move_constructible_v<UniqueFd>);
static_assert(std::is_nothrow_move_assignable_v<UniqueFd>);
static_assert(std::is_default_constructible_v<UniqueFd>);
/* Never an int in disguise, in either direction. */
static_assert(!std::is_convertible_v<UniqueFd, int>);
static_assert(!std::is_constructible_v<int, UniqueFd>);
static_assert(!std::is_constructible_v<int, const UniqueFd &>);
static_assert(!std::is_convertible_v<int, UniqueFd>);
static_assert(std::is_constructible_v<UniqueFd, int>);
static_assert(!std::is_convertible_v<UniqueFd, bool>);

using fdtest::is_cloexec;
using fdtest::is_open;
using fdtest::open_fds;

namespace {

/* A pipe without O_CLOEXEC, so that dup()'s CLOEXEC cannot be inherited from the original. */
std::pair<UniqueFd, UniqueFd> make_pipe()
{
	int p[2];
	REQUIRE(pipe(p) == 0);
	return {UniqueFd(p[0]), UniqueFd(p[1])};
}

/* Writes a byte through w and reads it back through r: both really are the two ends. */
bool connected(int r, int w, char c = 'x')
{
	if (write(w, &c, 1) != 1)
		return false;
	char got = 0;
	return read(r, &got, 1) == 1 && got == c;
}

} // namespace

TEST_CASE("UniqueFd: default is invalid and destroys without closing anything", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		UniqueFd fd;
		CHECK_FALSE(fd.is_valid());
		CHECK(fd.get() == -1);
		UniqueFd negative(-1);
		CHECK_FALSE(negative.is_valid());
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: destructor closes the descriptor", "[unique_fd]")
{
	const std::size_t before = open_fds();
	int raw_r, raw_w;
	{
		auto [r, w] = make_pipe();
		raw_r = r.get();
		raw_w = w.get();
		CHECK(r.is_valid());
		CHECK(w.is_valid());
		CHECK(open_fds() == before + 2);
		CHECK(connected(raw_r, raw_w));
	}
	CHECK_FALSE(is_open(raw_r));
	CHECK_FALSE(is_open(raw_w));
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: a vector of them closes every one", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		std::vector<UniqueFd> v;
		for (int i = 0; i < 50; ++i) {
			auto [r, w] = make_pipe();
			v.push_back(std::move(r));
			v.push_back(std::move(w));
		}
		CHECK(open_fds() == before + 100);
		/* Reallocation moves them; none may be closed or doubled by that. */
		v.shrink_to_fit();
		v.reserve(1000);
		CHECK(open_fds() == before + 100);
		v.erase(v.begin(), v.begin() + 10);
		CHECK(open_fds() == before + 90);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: move construction transfers ownership", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		const int raw = w.get();
		UniqueFd moved(std::move(w));
		CHECK(moved.get() == raw);
		CHECK(moved.is_valid());
		CHECK_FALSE(w.is_valid()); // NOLINT(bugprone-use-after-move)
		CHECK(w.get() == -1);
		CHECK(open_fds() == before + 2);
		{
			UniqueFd inner(std::move(moved));
			CHECK(inner.get() == raw);
			CHECK_FALSE(moved.is_valid());
		}
		/* The inner owner closed it; the moved-from shells did not double-close. */
		CHECK_FALSE(is_open(raw));
		CHECK(open_fds() == before + 1);
		CHECK(is_open(r.get()));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: move assignment closes the old descriptor and takes the new", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r1, w1] = make_pipe();
		auto [r2, w2] = make_pipe();
		const int old_raw = w1.get();
		const int new_raw = w2.get();
		w1 = std::move(w2);
		CHECK(w1.get() == new_raw);
		CHECK_FALSE(w2.is_valid());
		CHECK_FALSE(is_open(old_raw));
		CHECK(open_fds() == before + 3);
		CHECK(connected(r2.get(), w1.get()));

		/* Into an empty one. */
		UniqueFd empty;
		empty = std::move(w1);
		CHECK(empty.get() == new_raw);
		CHECK_FALSE(w1.is_valid());
		CHECK(open_fds() == before + 3);

		/* From an empty one: closes what was held. */
		empty = UniqueFd();
		CHECK_FALSE(empty.is_valid());
		CHECK_FALSE(is_open(new_raw));
		CHECK(open_fds() == before + 2);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: self move-assignment keeps the descriptor open", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		const int raw = w.get();
		UniqueFd &alias = w;
		w = std::move(alias);
		CHECK(w.get() == raw);
		CHECK(is_open(raw));
		CHECK(connected(r.get(), w.get()));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: std::swap exchanges without closing", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		const int raw_r = r.get();
		const int raw_w = w.get();
		std::swap(r, w);
		CHECK(r.get() == raw_w);
		CHECK(w.get() == raw_r);
		CHECK(open_fds() == before + 2);
		CHECK(connected(w.get(), r.get()));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: release gives the descriptor up without closing it", "[unique_fd]")
{
	const std::size_t before = open_fds();
	int raw = -1;
	{
		auto [r, w] = make_pipe();
		raw = w.release();
		CHECK(raw >= 0);
		CHECK_FALSE(w.is_valid());
		CHECK(w.get() == -1);
		/* Releasing again yields nothing. */
		CHECK(w.release() == -1);
		CHECK(connected(r.get(), raw));
	}
	/* The read end was closed, the released write end was not. */
	CHECK(is_open(raw));
	CHECK(open_fds() == before + 1);
	REQUIRE(close(raw) == 0);
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: reset closes; and reset(fd) adopts", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		const int raw_w = w.get();
		w.reset();
		CHECK_FALSE(w.is_valid());
		CHECK_FALSE(is_open(raw_w));
		CHECK(open_fds() == before + 1);

		/* Resetting an empty one is harmless. */
		w.reset();
		w.reset(-1);
		CHECK(open_fds() == before + 1);

		int p[2];
		REQUIRE(pipe(p) == 0);
		CHECK(open_fds() == before + 3);
		w.reset(p[1]);
		CHECK(w.get() == p[1]);
		CHECK(open_fds() == before + 3);
		/* reset(other) closes the one held before adopting. */
		r.reset(p[0]);
		CHECK(r.get() == p[0]);
		CHECK(open_fds() == before + 2);
		CHECK(connected(r.get(), w.get()));
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: dup is a close-on-exec duplicate of the same file", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		auto [r, w] = make_pipe();
		REQUIRE_FALSE(is_cloexec(w.get()));
		UniqueFd d = w.dup();
		REQUIRE(d.is_valid());
		CHECK(d.get() != w.get());
		CHECK(is_cloexec(d.get()));
		/* The original's flags are untouched. */
		CHECK_FALSE(is_cloexec(w.get()));
		CHECK(open_fds() == before + 3);
		/* Same open file: a byte written through the duplicate comes out of the pipe. */
		CHECK(connected(r.get(), d.get(), 'd'));
		/* Shared file status flags prove it is one open file description, not a reopen. */
		REQUIRE(fcntl(w.get(), F_SETFL, fcntl(w.get(), F_GETFL) | O_NONBLOCK) == 0);
		CHECK((fcntl(d.get(), F_GETFL) & O_NONBLOCK) != 0);
		/* Closing the original leaves the duplicate working. */
		w.reset();
		CHECK(connected(r.get(), d.get(), 'e'));
		CHECK(open_fds() == before + 2);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: dup of an invalid one is invalid with EBADF", "[unique_fd]")
{
	const std::size_t before = open_fds();
	{
		UniqueFd empty;
		errno = 0;
		UniqueFd d = empty.dup();
		CHECK_FALSE(d.is_valid());
		CHECK(errno == EBADF);
	}
	CHECK(open_fds() == before);
}

TEST_CASE("UniqueFd: dup past RLIMIT_NOFILE fails with EMFILE", "[unique_fd]")
{
	const std::size_t before = open_fds();
	rlimit saved{};
	REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	{
		auto [r, w] = make_pipe();
		std::vector<UniqueFd> held;
		/* Just enough room for what is open now plus a few holes to fill. */
		rlimit low = saved;
		low.rlim_cur = static_cast<rlim_t>(w.get() + 8);
		REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
		int err = 0;
		for (int i = 0; i < 100000; ++i) {
			errno = 0;
			UniqueFd d = w.dup();
			if (!d.is_valid()) {
				err = errno;
				break;
			}
			held.push_back(std::move(d));
		}
		REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
		CHECK(err == EMFILE);
		CHECK_FALSE(held.empty());
		CHECK(open_fds() == before + 2 + held.size());
	}
	CHECK(open_fds() == before);
}
