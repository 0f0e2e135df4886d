// PipePool: pipes are a scarce kernel resource, so relays borrow one only while bytes are in flight.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include <shoal/fdpass/unique_fd.h>

namespace shoal::splicer {

struct Pipe {
	UniqueFd read_end;
	UniqueFd write_end;
};

class PipePool {
public:
	struct Limits {
		std::size_t pipe_size = 512 * 1024; /* F_SETPIPE_SZ request; the kernel may give less */
		std::size_t max_pipes = 4096;       /* pipes lent out at once */
		std::size_t max_idle = 64;          /* empty pipes kept for reuse */
	};

	explicit PipePool(Limits limits) : limits_(limits) {}

	/* An empty pipe, or nothing when the limit is reached or the kernel refuses (the caller copies instead). */
	std::optional<Pipe> get();
	/* Returns an empty pipe for reuse. */
	void put(Pipe pipe);
	/* Gives up a pipe that may hold bytes (it is closed, never reused). */
	void discard(Pipe pipe);
	/* Counts a pipe that arrived with a live upgrade as lent out. */
	void adopt() { in_use_++; }
	/* The new process owns the lent-out pipes now; forget them without closing anything twice. */
	void forget(std::size_t n) { in_use_ -= n; }

	std::size_t in_use() const { return in_use_; }
	std::size_t idle() const { return idle_.size(); }
	std::size_t created() const { return created_; }
	std::size_t refusals() const { return refusals_; }
	/* What F_SETPIPE_SZ actually gave the last new pipe. */
	std::size_t pipe_size() const { return actual_size_; }

private:
	Limits limits_;
	std::vector<Pipe> idle_;
	std::size_t in_use_ = 0;
	std::size_t created_ = 0;
	std::size_t refusals_ = 0;
	std::size_t actual_size_ = 0;
};

} // namespace shoal::splicer
