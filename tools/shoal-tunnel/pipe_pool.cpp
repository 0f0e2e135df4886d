// PipePool: pipe2(O_CLOEXEC | O_NONBLOCK), grown with F_SETPIPE_SZ when the system lets us.
#include "pipe_pool.h"

#include <fcntl.h>
#include <unistd.h>

namespace shoal::tunnel {

Pipe PipePool::get()
{
	if (!idle_.empty()) {
		Pipe p = std::move(idle_.back());
		idle_.pop_back();
		return p;
	}
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return {};
	Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
	/*
	 * A 64 KiB pipe caps each splice at 16 pages; 1 MiB moves a whole TCP receive burst per
	 * call. Unprivileged users may be held to pipe-max-size or a per-user total: then the
	 * default size it is, asked once.
	 */
	if (!size_refused_) {
		int got = ::fcntl(p.write_end.get(), F_SETPIPE_SZ, static_cast<int>(pipe_size_));
		if (got > 0)
			chunk_ = static_cast<std::size_t>(got);
		else
			size_refused_ = true;
	}
	return p;
}

void PipePool::put(Pipe pipe)
{
	if (!pipe.valid())
		return;
	if (idle_.size() < max_idle_)
		idle_.push_back(std::move(pipe));
}

} // namespace shoal::tunnel
