// Audit: one JSON line per finished relay (metadata, reason, byte counts, unsent bytes, duration, TCP_INFO of both sockets).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>
#include <shoal/proto/messages.h>

namespace shoal::proxy {

class Audit {
public:
	/* path: append to this file (created 0640); none: write to the log ("audit") at info. */
	static Result<std::unique_ptr<Audit>> open(std::optional<std::string> path, std::string owner);

	/* Reopens the file (after logrotate moved it); keeps the old one when that fails. */
	void reopen();

	/* Writes the line for one done event; fds are its [a, b] = [client, upstream]. */
	void record(const proto::Done &done, const std::vector<UniqueFd> &fds);

	/* The line record() writes, without the trailing newline. */
	std::string line(const proto::Done &done, const std::vector<UniqueFd> &fds) const;

private:
	Audit(std::optional<std::string> path, UniqueFd fd, std::string owner)
		: path_(std::move(path)), fd_(std::move(fd)), owner_(std::move(owner))
	{
	}

	std::optional<std::string> path_;
	UniqueFd fd_;
	std::string owner_;
};

} // namespace shoal::proxy
