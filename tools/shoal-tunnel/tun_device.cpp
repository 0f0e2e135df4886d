// TunDevice: read(2) per packet (a TUN fd has no recvmmsg) into a fixed batch of slots; write(2) per packet.
#include "tun_device.h"

#include <cerrno>
#include <unistd.h>

#include "uv_util.h"

namespace shoal::tunnel {

TunDevice::TunDevice(uv_loop_t *loop, UniqueFd fd, unsigned mtu, Counters &counters)
	: loop_(loop), fd_(std::move(fd)), counters_(counters)
{
	/* Room for an MTU-sized packet plus slack; a multiple of 64 keeps every slot as aligned as the first. */
	slot_size_ = (static_cast<std::size_t>(mtu) + 256 + 63) & ~std::size_t(63);
	if (slot_size_ > 65536 + 64)
		slot_size_ = 65536 + 64;
	buffer_.reset(new std::uint8_t[slot_size_ * kBatch]);
	for (std::size_t i = 0; i < kBatch; i++)
		slots_[i].data = buffer_.get() + i * slot_size_;
}

TunDevice::~TunDevice()
{
	close();
}

bool TunDevice::start(BatchHandler on_batch, ErrorHandler on_error)
{
	on_batch_ = std::move(on_batch);
	on_error_ = std::move(on_error);
	poll_ = new uv_poll_t;
	if (uv_poll_init(loop_, poll_, fd_.get()) < 0) {
		delete poll_;
		poll_ = nullptr;
		return false;
	}
	poll_->data = this;
	uv_poll_start(poll_, UV_READABLE, poll_cb);
	return true;
}

void TunDevice::close()
{
	close_and_delete(poll_);
	poll_ = nullptr;
	fd_.reset();
}

void TunDevice::poll_cb(uv_poll_t *handle, int status, int)
{
	auto *self = static_cast<TunDevice *>(handle->data);
	guarded("tun0", [&] {
		if (status < 0) {
			int err = -status;
			self->close();
			if (self->on_error_)
				self->on_error_(err);
			return;
		}
		self->on_readable();
	});
}

void TunDevice::on_readable()
{
	for (unsigned batch = 0; batch < kBatchesPerWakeup && fd_.is_valid(); batch++) {
		std::size_t n = 0;
		int err = 0;
		while (n < kBatch) {
			ssize_t r = ::read(fd_.get(), slots_[n].data, slot_size_);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				err = errno;
				break;
			}
			if (r == 0)
				break;
			slots_[n].len = static_cast<std::size_t>(r);
			counters_.tun_packets_read++;
			counters_.tun_bytes_read += static_cast<std::uint64_t>(r);
			n++;
		}
		if (n > 0 && on_batch_)
			on_batch_(std::span<PacketSlot>(slots_, n));
		if (err && err != EAGAIN) {
			/* EBADFD/EIO: tun0 was torn down with its namespace. Nothing more will come. */
			close();
			if (on_error_)
				on_error_(err);
			return;
		}
		if (n < kBatch)
			return; /* drained */
	}
	/* Still more: level-triggered polling calls us again after the rest of the loop ran. */
}

bool TunDevice::write(const std::uint8_t *data, std::size_t len)
{
	if (!fd_.is_valid())
		return false;
	ssize_t r;
	do
		r = ::write(fd_.get(), data, len);
	while (r < 0 && errno == EINTR);
	if (r != static_cast<ssize_t>(len)) {
		counters_.tun_write_errors++;
		return false;
	}
	counters_.tun_packets_written++;
	counters_.tun_bytes_written += len;
	return true;
}

} // namespace shoal::tunnel
