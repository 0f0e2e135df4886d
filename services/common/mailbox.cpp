// Mailbox: where results wait for their owner to come back (after a proxy restart).
#include "mailbox.h"

#include <cerrno>

namespace shoal::service {

Expected<void, Refused> Mailbox::post(const std::string &owner, OutMessage message,
				      Clock::time_point expires)
{
	auto it = boxes_.find(owner);
	if (it == boxes_.end()) {
		if (boxes_.size() >= limits_.max_owners)
			return Unexpected(Refused{ENOSPC, std::move(message)});
		it = boxes_.emplace(owner, std::deque<Letter>{}).first;
	}
	if (it->second.size() >= limits_.max_messages)
		return Unexpected(Refused{ENOBUFS, std::move(message)});
	it->second.push_back({std::move(message), expires});
	total_++;
	return {};
}

std::deque<Mailbox::Letter> Mailbox::take(const std::string &owner)
{
	auto it = boxes_.find(owner);
	if (it == boxes_.end())
		return {};
	std::deque<Letter> out = std::move(it->second);
	boxes_.erase(it);
	total_ -= out.size();
	return out;
}

void Mailbox::put_back(const std::string &owner, std::deque<Letter> letters)
{
	if (letters.empty())
		return;
	auto &box = boxes_[owner];
	total_ += letters.size();
	while (!box.empty()) {
		letters.push_back(std::move(box.front()));
		box.pop_front();
	}
	box = std::move(letters);
}

std::size_t Mailbox::expire(Clock::time_point now)
{
	std::size_t dropped = 0;
	for (auto it = boxes_.begin(); it != boxes_.end();) {
		auto &box = it->second;
		std::size_t before = box.size();
		std::erase_if(box, [now](const Letter &l) { return l.expires <= now; });
		dropped += before - box.size();
		if (box.empty())
			it = boxes_.erase(it);
		else
			++it;
	}
	total_ -= dropped;
	return dropped;
}

std::size_t Mailbox::count(const std::string &owner) const
{
	auto it = boxes_.find(owner);
	return it == boxes_.end() ? 0 : it->second.size();
}

std::vector<std::string> Mailbox::owner_names() const
{
	std::vector<std::string> out;
	for (const auto &[owner, box] : boxes_)
		out.push_back(owner);
	return out;
}

void Mailbox::for_each(const std::function<void(const std::string &, const Letter &)> &f) const
{
	for (const auto &[owner, box] : boxes_)
		for (const Letter &l : box)
			f(owner, l);
}

void Mailbox::clear()
{
	boxes_.clear();
	total_ = 0;
}

} // namespace shoal::service
