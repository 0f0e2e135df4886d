// SlotPool: index ↔ address arithmetic over a prefix, the fresh cursor and the hold-down queue.
#include "slot_pool.h"

#include <algorithm>

namespace shoal::bumblebee {

namespace {

/* The low 64 bits of an address (all of it for IPv4), host order. */
std::uint64_t low64(const packet::Addr &a)
{
	if (a.family == AF_INET)
		return a.v4_host();
	std::uint64_t v = 0;
	for (int i = 8; i < 16; i++)
		v = v << 8 | a.bytes[i];
	return v;
}

} // namespace

SlotPool::SlotPool(const packet::Addr &prefix, unsigned prefix_len, const packet::Addr &reserved,
		   std::uint64_t hold_down_ms)
	: prefix_(prefix), prefix_len_(prefix_len), hold_down_ms_(hold_down_ms)
{
	unsigned host_bits = (prefix.family == AF_INET ? 32 : 128) - prefix_len;
	host_bits = std::min(host_bits, 40u); /* 10^12 flows is plenty; keeps the arithmetic in 64 bits */
	std::uint64_t size = std::uint64_t(1) << host_bits;
	/* IPv4 loses the network and broadcast addresses; IPv6 only the subnet-router anycast (index 0). */
	capacity_ = prefix.family == AF_INET ? (size >= 4 ? size - 2 : 0) : size - 1;
	/* Clear the host bits of the prefix so index arithmetic starts at the network address. */
	std::uint64_t mask = host_bits >= 64 ? ~std::uint64_t(0) : (std::uint64_t(1) << host_bits) - 1;
	if (prefix_.family == AF_INET) {
		std::uint32_t v = prefix_.v4_host() & ~static_cast<std::uint32_t>(mask);
		prefix_ = packet::Addr::v4(v);
	} else {
		std::uint64_t lo = low64(prefix_) & ~mask;
		for (int i = 15; i >= 8; i--, lo >>= 8)
			prefix_.bytes[i] = static_cast<std::uint8_t>(lo);
	}
	reserved_index_ = contains(reserved) ? index_of(reserved) : 0;
}

bool SlotPool::contains(const packet::Addr &a) const
{
	if (a.family != prefix_.family)
		return false;
	std::uint64_t i = index_of(a);
	if (i < 1 || i > capacity_)
		return false;
	return at(i) == a;
}

packet::Addr SlotPool::at(std::uint64_t index) const
{
	packet::Addr a = prefix_;
	if (a.family == AF_INET)
		return packet::Addr::v4(static_cast<std::uint32_t>(prefix_.v4_host() + index));
	std::uint64_t lo = low64(prefix_) + index;
	for (int i = 15; i >= 8; i--, lo >>= 8)
		a.bytes[i] = static_cast<std::uint8_t>(lo);
	return a;
}

std::uint64_t SlotPool::index_of(const packet::Addr &a) const
{
	return low64(a) - low64(prefix_);
}

std::optional<packet::Addr> SlotPool::acquire(std::uint64_t now_ms)
{
	/* Held-down addresses whose time is up go first: the queue stays as short as the hold-down allows. */
	if (!held_.empty() && held_.front().until_ms <= now_ms) {
		std::uint64_t i = held_.front().index;
		held_.pop_front();
		in_use_++;
		return at(i);
	}
	while (next_fresh_ <= capacity_) {
		std::uint64_t i = next_fresh_++;
		if (i == reserved_index_)
			continue;
		in_use_++;
		return at(i);
	}
	return std::nullopt;
}

void SlotPool::release(const packet::Addr &addr, std::uint64_t now_ms)
{
	if (in_use_ > 0)
		in_use_--;
	held_.push_back({index_of(addr), now_ms + hold_down_ms_});
}

void SlotPool::claim(const packet::Addr &)
{
	in_use_++;
}

nlohmann::json SlotPool::save(std::uint64_t now_ms, std::size_t first, std::size_t count) const
{
	nlohmann::json held = nlohmann::json::array();
	for (std::size_t i = first; i < held_.size() && i < first + count; i++)
		held.push_back({held_[i].index,
				held_[i].until_ms > now_ms ? held_[i].until_ms - now_ms : 0});
	return {{"next_fresh", next_fresh_}, {"held", std::move(held)}};
}

void SlotPool::restore(const nlohmann::json &j, std::uint64_t now_ms)
{
	next_fresh_ = std::max(next_fresh_, j.at("next_fresh").get<std::uint64_t>());
	for (const auto &h : j.at("held"))
		held_.push_back({h.at(0).get<std::uint64_t>(), now_ms + h.at(1).get<std::uint64_t>()});
}

} // namespace shoal::bumblebee
