// Audit: builds the per-relay JSON line and appends it with one write(2), so concurrent lines never interleave.
#include "audit.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>
#include <utility>

#include <shoal/proto/base64.h>
#include <shoal/service/log.h>

#include "tcp_info.h"
#include "util.h"

namespace shoal::proxy {

namespace {

Result<UniqueFd> open_log(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640));
	if (!fd.is_valid())
		return errno_error(errno);
	return fd;
}

} // namespace

Result<std::unique_ptr<Audit>> Audit::open(std::optional<std::string> path, std::string owner)
{
	UniqueFd fd;
	if (path) {
		auto f = open_log(*path);
		if (!f)
			return errno_error(f.error());
		fd = std::move(*f);
	}
	return std::unique_ptr<Audit>(new Audit(std::move(path), std::move(fd), std::move(owner)));
}

void Audit::reopen()
{
	if (!path_)
		return;
	auto f = open_log(*path_);
	if (!f) {
		service::logger("proxy")->error("cannot reopen audit log {}: {}; keeping the old one",
						*path_, service::errno_name(f.error()));
		return;
	}
	fd_ = std::move(*f);
	service::logger("proxy")->info("reopened audit log {}", *path_);
}

std::string Audit::line(const proto::Done &done, const std::vector<UniqueFd> &fds) const
{
	nlohmann::json j = nlohmann::json::object();
	j["event"] = "done";
	j["ts_ms"] = wall_ms();
	j["owner"] = owner_;
	j["task"] = done.task;
	j["reason"] = proto::to_string(done.reason);
	if (done.error)
		j["error"] = *done.error;
	/* a is the client, b the upstream: the order the proxy handed them to splicer in. */
	j["bytes_a_to_b"] = done.bytes_a_to_b;
	j["bytes_b_to_a"] = done.bytes_b_to_a;
	j["duration_ms"] = done.duration_ms;
	/*
	 * After a cancel or splicer's stop, bytes it had read but not delivered come back in
	 * pipes; the proxy does not carry on with the sockets, so they are lost with them: count them.
	 */
	if (done.unsent_a_to_b)
		j["unsent_a_to_b"] = done.unsent_a_to_b;
	if (done.unsent_b_to_a)
		j["unsent_b_to_a"] = done.unsent_b_to_a;
	j["metadata"] = done.metadata;
	nlohmann::json info = nlohmann::json::object();
	info["client"] = fds.size() > 0 ? tcp_info_json(fds[0].get()) : nlohmann::json(nullptr);
	info["upstream"] = fds.size() > 1 ? tcp_info_json(fds[1].get()) : nlohmann::json(nullptr);
	j["tcp_info"] = std::move(info);
	return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void Audit::record(const proto::Done &done, const std::vector<UniqueFd> &fds)
{
	std::string text = line(done, fds);
	if (!fd_.is_valid()) {
		service::logger("audit")->info("{}", text);
		return;
	}
	text += '\n';
	/* A regular file: this write does not wait on the network, only on the disk. */
	ssize_t n;
	do
		n = ::write(fd_.get(), text.data(), text.size());
	while (n < 0 && errno == EINTR);
	if (n != static_cast<ssize_t>(text.size())) {
		int err = n < 0 ? errno : EIO;
		service::logger("proxy")->error("audit log {}: {}; the line was: {}", *path_,
						service::errno_name(err), text.substr(0, text.size() - 1));
	}
}

} // namespace shoal::proxy
