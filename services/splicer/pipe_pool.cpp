// PipePool: lend, reuse and cap the pipes splice(2) moves bytes through.
#include "pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace shoal::splicer {

std::optional<Pipe> PipePool::get()
{
	if (in_use_ >= limits_.max_pipes) {
		refusals_++;
		return std::nullopt;
	}
	if (!idle_.empty()) {
		Pipe p = std::move(idle_.back());
		idle_.pop_back();
		in_use_++;
		return p;
	}
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		refusals_++; /* EMFILE, ENFILE: fall back to copying rather than fail the relay */
		return std::nullopt;
	}
	Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
	/* Over pipe-user-pages-soft the kernel refuses a bigger pipe; the default one still works. */
	::fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(limits_.pipe_size));
	int size = ::fcntl(p.write_end.get(), F_GETPIPE_SZ);
	actual_size_ = size > 0 ? static_cast<std::size_t>(size) : 65536;
	created_++;
	in_use_++;
	return p;
}

void PipePool::put(Pipe pipe)
{
	in_use_--;
	if (idle_.size() < limits_.max_idle)
		idle_.push_back(std::move(pipe));
}

void PipePool::discard(Pipe pipe)
{
	in_use_--;
	(void)pipe; /* closed here */
}

} // namespace shoal::splicer
