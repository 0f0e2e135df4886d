// FlowTable: PROGRAM's packets to their flow's socket (new flows made on a SYN or first datagram), bumblebee's back to tun0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/socket.h>
#include <uv.h>

#include <shoal/packet/packet.h>

#include "flow.h"
#include "report.h"
#include "tun_device.h"

namespace shoal::tunnel {

class FlowTable {
public:
	struct Handlers {
		/* A flow was made and its first packet is in its socket: send the upgrade. */
		std::function<void(Flow &)> on_new_flow;
		/* bumblebee closed its end (error 0) or the socket failed; ours is closed already. */
		std::function<void(Flow &, int error)> on_socket_closed;
	};

	FlowTable(uv_loop_t *loop, TunDevice &tun, Report &report, std::uint64_t start_ms,
		  std::string id_prefix, std::size_t max_flows, Handlers handlers);
	~FlowTable();
	FlowTable(const FlowTable &) = delete;
	FlowTable &operator=(const FlowTable &) = delete;

	/* A batch read from tun0: parse, route each packet, send runs of one flow with sendmmsg. */
	void dispatch(std::span<PacketSlot> batch);

	Flow *find(const std::string &id);
	/* Stops pumping, closes our end of the socketpair, forgets the key. Idempotent. */
	void close_socket(Flow &flow);
	/* Forgets the flow altogether (its connector and relay die with it). */
	void erase(Flow &flow);
	/* Tells PROGRAM its flow was refused: a RST for TCP, ICMP port unreachable for UDP. */
	void refuse(Flow &flow);

	std::size_t size() const { return by_id_.size(); }
	std::vector<Flow *> snapshot() const;
	/* Forgets recently closed TCP flows older than their grace (call now and then). */
	void prune(std::uint64_t now_ms);

private:
	static constexpr std::size_t kRxBatch = 32;

	Flow *route(const packet::Packet &p);
	Flow *create(const packet::Packet &p);
	void flush_run();
	void on_socket_event(Flow &flow, int status);
	void send_rst(const packet::Packet &to);

	uv_loop_t *loop_;
	TunDevice &tun_;
	Report &report_;
	Counters &counters_;
	std::uint64_t start_ms_;
	std::string id_prefix_;
	std::uint64_t next_id_ = 0;
	std::size_t max_flows_;
	Handlers handlers_;

	std::unordered_map<std::string, std::unique_ptr<Flow>> by_id_;
	std::unordered_map<packet::FlowKey, Flow *, packet::FlowKeyHash> by_key_;
	/*
	 * TCP flows bumblebee closed lately, until when: their stragglers (PROGRAM's last ACK
	 * after the FINs) are dropped quietly instead of drawing a RST, as TIME_WAIT would.
	 */
	std::unordered_map<packet::FlowKey, std::uint64_t, packet::FlowKeyHash> recently_closed_;
	std::vector<Flow *> new_flows_; /* made in this batch: announced once their first packet is sent */

	/* A run of consecutive packets for one flow, sent with one sendmmsg. */
	Flow *run_flow_ = nullptr;
	std::size_t run_len_ = 0;
	mmsghdr tx_msgs_[TunDevice::kBatch];
	iovec tx_iov_[TunDevice::kBatch];

	/* bumblebee → tun0: one recvmmsg per wake-up into reused buffers. */
	std::unique_ptr<std::uint8_t[]> rx_buffer_;
	mmsghdr rx_msgs_[kRxBatch];
	iovec rx_iov_[kRxBatch];
};

} // namespace shoal::tunnel
