// SlotPool: the in-namespace source addresses bumblebee gives its flows, one per flow, with a TIME_WAIT hold-down before reuse.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <shoal/packet/packet.h>

namespace shoal::bumblebee {

/*
 * A flow's NAT slot is a whole address of a private prefix (100.64.0.0/10, a ULA /64), so a
 * flow is found again from its accepted socket's peer address alone and two tenants that
 * use the same client address can never collide. A released address waits hold_down_ms (the
 * namespace's TIME_WAIT) before it is used again, and is then preferred to a fresh one, so the
 * hold-down queue holds at most what ends within one hold-down.
 */
class SlotPool {
public:
	/* prefix: the pool's network; reserved: an address inside it never given out (the listener). */
	SlotPool(const packet::Addr &prefix, unsigned prefix_len, const packet::Addr &reserved,
		 std::uint64_t hold_down_ms);

	std::optional<packet::Addr> acquire(std::uint64_t now_ms);
	void release(const packet::Addr &addr, std::uint64_t now_ms);

	std::uint64_t capacity() const { return capacity_; }
	std::uint64_t in_use() const { return in_use_; }
	std::uint64_t held_down() const { return held_.size(); }
	int family() const { return prefix_.family; }
	bool contains(const packet::Addr &addr) const;

	/* For a live upgrade: fresh-index cursor and the hold-down queue with remaining times. */
	nlohmann::json save(std::uint64_t now_ms, std::size_t first, std::size_t count) const;
	void restore(const nlohmann::json &j, std::uint64_t now_ms);
	/* Marks an address as in use again (a flow imported in a live upgrade). */
	void claim(const packet::Addr &addr);

private:
	packet::Addr at(std::uint64_t index) const;
	std::uint64_t index_of(const packet::Addr &addr) const;

	packet::Addr prefix_;
	unsigned prefix_len_;
	std::uint64_t reserved_index_;
	std::uint64_t capacity_;     /* usable indices: 1 .. capacity_ (0 is the network address) */
	std::uint64_t next_fresh_ = 1;
	std::uint64_t in_use_ = 0;
	std::uint64_t hold_down_ms_;
	struct Held {
		std::uint64_t index;
		std::uint64_t until_ms;
	};
	std::deque<Held> held_;
};

} // namespace shoal::bumblebee
