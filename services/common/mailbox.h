// Results waiting for an owner whose connection is gone: bounded per owner and in owners, with a TTL.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <shoal/fdpass/channel.h>

namespace shoal::service {

class Mailbox {
public:
	using Clock = std::chrono::steady_clock;

	struct Limits {
		std::size_t max_owners = 1024;
		std::size_t max_messages = 4096; /* per owner */
		std::chrono::milliseconds ttl{300000};
	};

	struct Letter {
		OutMessage message;
		Clock::time_point expires;
	};

	explicit Mailbox(Limits limits) : limits_(limits) {}

	/* Stores message for owner; hands it back when a limit is reached. */
	Expected<void, Refused> post(const std::string &owner, OutMessage message,
				     Clock::time_point expires);
	Expected<void, Refused> post(const std::string &owner, OutMessage message)
	{
		return post(owner, std::move(message), Clock::now() + limits_.ttl);
	}

	/* Removes and returns owner's letters, oldest first. */
	std::deque<Letter> take(const std::string &owner);
	/* Puts letters back at the front (delivery stopped part-way). */
	void put_back(const std::string &owner, std::deque<Letter> letters);

	/* Drops expired letters (closing their fds); returns how many. */
	std::size_t expire(Clock::time_point now);

	std::size_t count(const std::string &owner) const;
	std::size_t owners() const { return boxes_.size(); }
	std::size_t messages() const { return total_; }
	std::vector<std::string> owner_names() const;

	void for_each(const std::function<void(const std::string &, const Letter &)> &f) const;
	void clear();

private:
	Limits limits_;
	std::map<std::string, std::deque<Letter>> boxes_;
	std::size_t total_ = 0;
};

} // namespace shoal::service
