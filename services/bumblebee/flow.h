// Flow: one IP flow bumblebee carries: its sockets, NAT slot, handshake state, TCP close tracking and counters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/unique_fd.h>
#include <shoal/packet/packet.h>
#include <shoal/proto/messages.h>
#include <shoal/service/service.h>

namespace shoal::bumblebee {

enum class FlowState : std::uint8_t {
	first_packet, /* upgrade accepted, its first packet not read yet */
	confirm,      /* syn sent, waiting for the caller's confirm */
	handshake,    /* SYN injected, waiting for the kernel to accept */
	upgraded,     /* the kernel socket was handed over; pumping */
};
const char *to_string(FlowState s);

/* A libuv poll that frees itself once libuv lets go of it. */
class Poll {
public:
	Poll() = default;
	Poll(const Poll &) = delete;
	Poll &operator=(const Poll &) = delete;
	~Poll() { close(); }

	bool start(uv_loop_t *loop, int fd, void *data, uv_poll_cb cb);
	void pause();
	void resume();
	void close();
	bool active() const { return handle_ != nullptr; }

private:
	uv_poll_t *handle_ = nullptr;
	uv_poll_cb cb_ = nullptr;
};

struct Flow {
	std::string task;
	service::ClientRef client;
	std::string request_id;
	std::string metadata; /* compact JSON, as the client gave it */
	proto::FlowProtocol protocol = proto::FlowProtocol::tcp;
	FlowState state = FlowState::first_packet;
	bool confirm = false;
	bool detached = false; /* the upgrade request is answered late (deliver / deliver_error) */
	bool ending = false;   /* queued to end after the current batch */
	bool seqpacket = true; /* the flow socket's type: SOCK_SEQPACKET (a 0-byte read is EOF) or SOCK_DGRAM */
	void *owner = nullptr; /* the service, for libuv callbacks */

	UniqueFd sock;    /* the flow socket: raw IP packets of this flow */
	UniqueFd payload; /* UDP: our end of the payload socketpair */
	UniqueFd app;     /* UDP: the caller's end, until upgraded carries it away */
	Poll sock_poll;
	Poll payload_poll;

	packet::Endpoint client_ep; /* the client's own source, as in its packets */
	packet::Endpoint server_ep; /* what the client dialled */
	packet::Endpoint slot_ep;   /* TCP: the in-namespace source (pool address, client's port) */
	bool has_slot = false;

	std::vector<std::uint8_t> first; /* the SYN / first datagram, kept until upgraded */

	/*
	 * TCP tracking: enough to send a RST either way that the receiver accepts (RFC 5961 wants
	 * seq == rcv_nxt) and to see both FINs acknowledged. *_next: the sequence number after the
	 * highest byte each side has sent; *_ack: the highest ACK each side has sent.
	 */
	std::uint32_t client_next = 0, kernel_next = 0, client_ack = 0, kernel_ack = 0;
	bool client_next_valid = false, kernel_next_valid = false, client_ack_valid = false, kernel_ack_valid = false;
	std::uint32_t fin_out_seq = 0, fin_in_seq = 0;
	bool fin_out = false, fin_in = false, fin_out_acked = false, fin_in_acked = false;

	std::uint64_t bytes_out = 0, packets_out = 0; /* client → server, read from sock */
	std::uint64_t bytes_in = 0, packets_in = 0;   /* server → client, written to sock */

	std::int64_t started_wall_ms = 0;
	std::uint64_t deadline_ms = 0;   /* loop time; the handshake (or first packet, or confirm) must finish by then */
	std::uint64_t last_active_ms = 0; /* loop time of the last packet either way */
	std::uint64_t timeout_ms = 0;

	nlohmann::json flow_json() const;
};

} // namespace shoal::bumblebee
