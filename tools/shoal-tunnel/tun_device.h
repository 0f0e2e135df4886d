// TunDevice: tun0's fd on the loop — packets read in bounded batches into reused slots, packets written back one by one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include <uv.h>

#include <shoal/fdpass/unique_fd.h>

#include "report.h"

namespace shoal::tunnel {

/* One packet read from tun0, in a slot of the device's batch buffer (valid until the next batch). */
struct PacketSlot {
	std::uint8_t *data = nullptr;
	std::size_t len = 0;
};

class TunDevice {
public:
	/* Packets read per batch handed on, and batches per wake-up: bounded so flow sockets get their turn. */
	static constexpr std::size_t kBatch = 64;
	static constexpr unsigned kBatchesPerWakeup = 4;

	using BatchHandler = std::function<void(std::span<PacketSlot>)>;
	/* The device failed (the namespace went away): errno. */
	using ErrorHandler = std::function<void(int error)>;

	TunDevice(uv_loop_t *loop, UniqueFd fd, unsigned mtu, Counters &counters);
	~TunDevice();
	TunDevice(const TunDevice &) = delete;
	TunDevice &operator=(const TunDevice &) = delete;

	bool start(BatchHandler on_batch, ErrorHandler on_error);
	/* Stops reading and closes the device (tun0 disappears with its last fd). */
	void close();

	/* Writes one IP packet to PROGRAM; false (counted) if the kernel refused it. */
	bool write(const std::uint8_t *data, std::size_t len);

private:
	static void poll_cb(uv_poll_t *handle, int status, int events);
	void on_readable();

	uv_loop_t *loop_;
	UniqueFd fd_;
	Counters &counters_;
	std::size_t slot_size_;
	std::unique_ptr<std::uint8_t[]> buffer_; /* kBatch slots, allocated once */
	PacketSlot slots_[kBatch];
	uv_poll_t *poll_ = nullptr;
	BatchHandler on_batch_;
	ErrorHandler on_error_;
};

} // namespace shoal::tunnel
