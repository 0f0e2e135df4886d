// PipePool: reusable pipes for splice(2) relays, so a busy relay does not pay pipe2() per burst.
#pragma once

#include <cstddef>
#include <vector>

#include <shoal/fdpass/unique_fd.h>

namespace shoal::tunnel {

struct Pipe {
	UniqueFd read_end;
	UniqueFd write_end;
	bool valid() const { return read_end.is_valid(); }
};

class PipePool {
public:
	/* pipe_size: what F_SETPIPE_SZ asks for (bigger pipes, fewer splices); max_idle: pipes kept. */
	explicit PipePool(std::size_t pipe_size = 1024 * 1024, std::size_t max_idle = 64)
		: pipe_size_(pipe_size), max_idle_(max_idle) {}

	/* A pipe, empty, non-blocking and close-on-exec; invalid (errno set) when none can be made. */
	Pipe get();
	/* Takes back an empty pipe (one with bytes in it must be closed instead). */
	void put(Pipe pipe);
	/* Bytes one splice into a fresh pipe may move: what its buffer holds. */
	std::size_t chunk() const { return chunk_; }

private:
	std::size_t pipe_size_;
	std::size_t max_idle_;
	std::size_t chunk_ = 64 * 1024;
	bool size_refused_ = false;
	std::vector<Pipe> idle_;
};

} // namespace shoal::tunnel
