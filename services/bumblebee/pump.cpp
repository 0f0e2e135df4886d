// bumblebee packet paths: flow socket → NAT → TUN, TUN → reverse NAT → flow socket, the listener, UDP payloads, RSTs.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <shoal/service/log.h>

#include "bumblebee_service.h"

namespace shoal::bumblebee {

using proto::EndReason;
using proto::FlowProtocol;

namespace {

/* a >= b in TCP sequence space */
bool seq_ge(std::uint32_t a, std::uint32_t b)
{
	return static_cast<std::int32_t>(a - b) >= 0;
}

std::uint32_t seq_len(const packet::Packet &p)
{
	return static_cast<std::uint32_t>(p.payload_len()) + ((p.tcp_flags & packet::tcp_syn) ? 1 : 0) +
	       ((p.tcp_flags & packet::tcp_fin) ? 1 : 0);
}

/* Rounds of reads per wakeup: enough to batch, few enough that one busy flow cannot starve the rest. */
constexpr int kRounds = 4;

} // namespace

void BumblebeeService::on_flow_event(Flow &f, int status, int /*events*/)
{
	if (status < 0) {
		rst_to_kernel(f);
		end(f, EndReason::error, -status);
		return;
	}
	if (f.state == FlowState::first_packet) {
		take_first_packet(f);
		run_deferred_ends();
		return;
	}
	mmsghdr msgs[kBatch];
	iovec iov[kBatch];
	for (int round = 0; round < kRounds && !f.ending; round++) {
		for (std::size_t i = 0; i < kBatch; i++) {
			iov[i] = {buffers_.data() + i * kBufSize, kBufSize};
			msgs[i] = {};
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int n = ::recvmmsg(f.sock.get(), msgs, kBatch, MSG_DONTWAIT, nullptr);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			rst_to_kernel(f);
			end_later(f, EndReason::error, errno);
			break;
		}
		for (int i = 0; i < n && !f.ending; i++) {
			std::size_t len = msgs[i].msg_len;
			if (len == 0 && f.seqpacket) {
				/* The client closed its end: the kernel socket must hear about it. */
				if (f.state != FlowState::upgraded || !(f.fin_out && f.fin_in))
					rst_to_kernel(f);
				end_later(f, EndReason::eof);
				break;
			}
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				counters_.drop_malformed++;
				continue;
			}
			from_client(f, buffers_.data() + i * kBufSize, len);
		}
		if (static_cast<std::size_t>(n) < kBatch)
			break;
	}
	run_deferred_ends();
}

void BumblebeeService::from_client(Flow &f, std::uint8_t *buf, std::size_t len)
{
	f.packets_out++;
	f.bytes_out += len;
	f.last_active_ms = now();
	auto p = packet::parse(buf, len);
	if (!p) {
		counters_.drop_malformed++;
		return;
	}
	if (p->src() != f.client_ep || p->dst() != f.server_ep ||
	    p->proto != (f.protocol == FlowProtocol::tcp ? packet::proto_tcp : packet::proto_udp)) {
		counters_.drop_foreign++;
		return;
	}
	if (f.protocol == FlowProtocol::udp) {
		if (f.state != FlowState::upgraded) {
			counters_.drop_held++; /* only the first datagram waits for a confirm */
			return;
		}
		/* A zero-length message would read as EOF to the caller: such datagrams cannot be carried. */
		if (p->payload_len() == 0)
			counters_.drop_malformed++;
		else if (::send(f.payload.get(), p->payload(), p->payload_len(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			counters_.drop_congested++;
		return;
	}
	if (f.state == FlowState::confirm) {
		if (p->tcp_flags & packet::tcp_rst)
			end_later(f, EndReason::eof); /* the client gave up before the caller decided */
		else
			counters_.drop_held++; /* retransmitted SYNs: the first one is kept */
		return;
	}
	bool over = track(f, *p, true);
	inject(f, *p);
	if (over)
		end_later(f, EndReason::eof);
}

bool BumblebeeService::track(Flow &f, const packet::Packet &p, bool from_client)
{
	/* The same bookkeeping both ways, mirrored: "ours" is the sender's side of the flow. */
	std::uint32_t &next = from_client ? f.client_next : f.kernel_next;
	bool &next_valid = from_client ? f.client_next_valid : f.kernel_next_valid;
	std::uint32_t &ack = from_client ? f.client_ack : f.kernel_ack;
	bool &ack_valid = from_client ? f.client_ack_valid : f.kernel_ack_valid;
	bool &fin_ours = from_client ? f.fin_out : f.fin_in;
	std::uint32_t &fin_ours_seq = from_client ? f.fin_out_seq : f.fin_in_seq;
	bool fin_theirs = from_client ? f.fin_in : f.fin_out;
	std::uint32_t fin_theirs_seq = from_client ? f.fin_in_seq : f.fin_out_seq;
	bool &fin_theirs_acked = from_client ? f.fin_in_acked : f.fin_out_acked;
	std::uint32_t end = p.seq + seq_len(p);
	/* Only forward: a reordered or retransmitted segment must not move either mark back. */
	if (!next_valid || seq_ge(end, next)) {
		next = end;
		next_valid = true;
	}
	if (p.tcp_flags & packet::tcp_ack) {
		if (!ack_valid || seq_ge(p.ack, ack)) {
			ack = p.ack;
			ack_valid = true;
		}
		if (fin_theirs && seq_ge(p.ack, fin_theirs_seq + 1))
			fin_theirs_acked = true;
	}
	if (p.tcp_flags & packet::tcp_fin) {
		fin_ours = true;
		fin_ours_seq = end - 1;
	}
	return (p.tcp_flags & packet::tcp_rst) || (f.fin_out && f.fin_in && f.fin_out_acked && f.fin_in_acked);
}

void BumblebeeService::inject(Flow &f, packet::Packet &p)
{
	packet::set_src(p, f.slot_ep);
	packet::set_dst(p, listener_for(p.family));
	if (::write(ns_.tun.get(), p.data, p.len) < 0)
		counters_.drop_tun_write++;
	counters_.packets_out++;
	counters_.bytes_out += p.len;
}

void BumblebeeService::on_tun_readable()
{
	for (int round = 0; round < kRounds * 4; round++) {
		std::size_t got = 0;
		for (; got < kBatch; got++) {
			std::uint8_t *buf = buffers_.data() + got * kBufSize;
			ssize_t n = ::read(ns_.tun.get(), buf, kBufSize);
			if (n <= 0)
				break;
			auto p = packet::parse(buf, static_cast<std::size_t>(n));
			if (!p) {
				counters_.drop_malformed++;
				continue;
			}
			if (p->proto != packet::proto_tcp) {
				/* UDP flows never touch the namespace; ICMP from its kernel has no flow to go to. */
				counters_.drop_icmp += p->proto == packet::proto_icmp || p->proto == packet::proto_icmpv6;
				counters_.drop_no_flow += p->proto == packet::proto_udp;
				continue;
			}
			auto it = by_slot_.find(p->dst());
			if (it == by_slot_.end() || it->second->ending || p->src() != listener_for(p->family)) {
				counters_.drop_no_flow++;
				continue;
			}
			Flow &f = *it->second;
			bool over = track(f, *p, false);
			packet::set_src(*p, f.server_ep);
			packet::set_dst(*p, f.client_ep);
			f.last_active_ms = now();
			outgoing_.push_back({&f, p->data, p->len});
			if (over)
				end_later(f, EndReason::eof);
		}
		flush_to_clients();
		if (got < kBatch)
			break;
	}
	run_deferred_ends();
}

void BumblebeeService::flush_to_clients()
{
	mmsghdr msgs[kBatch];
	iovec iov[kBatch];
	std::size_t i = 0;
	while (i < outgoing_.size()) {
		Flow &f = *outgoing_[i].flow;
		std::size_t j = i;
		for (; j < outgoing_.size() && outgoing_[j].flow == &f; j++) {
			iov[j - i] = {outgoing_[j].data, outgoing_[j].len};
			msgs[j - i] = {};
			msgs[j - i].msg_hdr.msg_iov = &iov[j - i];
			msgs[j - i].msg_hdr.msg_iovlen = 1;
		}
		unsigned count = static_cast<unsigned>(j - i), done = 0;
		while (done < count) {
			int sent = ::sendmmsg(f.sock.get(), msgs + done, count - done, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (sent > 0) {
				for (int k = 0; k < sent; k++) {
					f.packets_in++;
					f.bytes_in += msgs[done + k].msg_len;
					counters_.packets_in++;
					counters_.bytes_in += msgs[done + k].msg_len;
				}
				done += static_cast<unsigned>(sent);
				continue;
			}
			int err = sent < 0 ? errno : EAGAIN;
			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == ENOBUFS) {
				/* A router's answer to a full queue: drop, and let TCP slow down. */
				counters_.drop_congested += count - done;
			} else if (!f.ending) {
				rst_to_kernel(f);
				end_later(f, EndReason::error, err);
			}
			break;
		}
		i = j;
	}
	outgoing_.clear();
}

int BumblebeeService::send_to_client(Flow &f, const std::uint8_t *buf, std::size_t len)
{
	if (::send(f.sock.get(), buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		counters_.drop_congested++;
		return errno;
	}
	f.packets_in++;
	f.bytes_in += len;
	counters_.packets_in++;
	counters_.bytes_in += len;
	return 0;
}

void BumblebeeService::on_listener_readable(int listener)
{
	for (int i = 0; i < 256; i++) {
		sockaddr_storage ss{};
		socklen_t len = sizeof(ss);
		int fd = ::accept4(listener, reinterpret_cast<sockaddr *>(&ss), &len, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The listener stays readable: without a pause this would spin. sweep() resumes it. */
				rt_->log().warn("Failed to accept a flow's connection: {}; pausing accepts for 100 ms",
						service::errno_name(errno));
				listen4_poll_.pause();
				listen6_poll_.pause();
				accepts_paused_ = true;
			} else if (errno != EAGAIN) {
				rt_->log().warn("Failed to accept a flow's connection: {}", service::errno_name(errno));
			}
			return;
		}
		UniqueFd sock(fd);
		auto peer = packet::Endpoint::from_sockaddr(reinterpret_cast<sockaddr *>(&ss), len);
		auto it = peer ? by_slot_.find(*peer) : by_slot_.end();
		if (it == by_slot_.end() || it->second->state != FlowState::handshake || it->second->ending) {
			/* Its flow timed out or went away: reset rather than leave the client a half-open peer. */
			linger lg{1, 0};
			::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			counters_.accepted_orphans++;
			continue;
		}
		deliver_upgraded(*it->second, std::move(sock));
	}
}

void BumblebeeService::on_payload_event(Flow &f, int status, int /*events*/)
{
	if (status < 0) {
		end(f, EndReason::error, -status);
		return;
	}
	std::uint8_t *payload = buffers_.data();
	std::uint8_t *out = buffers_.data() + kBufSize;
	for (int i = 0; i < 64; i++) {
		/* MSG_TRUNC: the real size, so a payload too large for one IP packet is dropped, never cut. */
		ssize_t n = ::recv(f.payload.get(), payload, kBufSize - 64, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			end(f, EndReason::error, errno);
			return;
		}
		if (n == 0) {
			end(f, EndReason::eof); /* the caller closed its socket */
			return;
		}
		f.last_active_ms = now();
		std::size_t len = static_cast<std::size_t>(n) > kBufSize - 64
					  ? 0
					  : packet::build_udp(out, kBufSize, f.server_ep, f.client_ep, payload,
							      static_cast<std::size_t>(n));
		if (len == 0) {
			counters_.drop_malformed++; /* too large for one IP packet */
			continue;
		}
		int err = send_to_client(f, out, len);
		if (err && err != EAGAIN && err != ENOBUFS) {
			end(f, EndReason::error, err); /* the client's socket is gone (a SOCK_DGRAM flow never reads 0) */
			return;
		}
	}
}


void BumblebeeService::send_rsts(Flow &f, bool to_kernel, std::uint32_t seq, bool also, std::uint32_t other)
{
	/*
	 * The receiver resets only at exactly its rcv_nxt (RFC 5961): our best guess is the sender's
	 * next byte; if the receiver's own last ACK says otherwise (a segment still in flight or
	 * lost), a second RST at that value covers it.
	 */
	const packet::Endpoint &src = to_kernel ? f.slot_ep : f.server_ep;
	const packet::Endpoint &dst = to_kernel ? listener_for(f.slot_ep.addr.family) : f.client_ep;
	for (std::uint32_t s : {seq, other}) {
		std::uint8_t buf[128];
		std::size_t len = packet::build_tcp(buf, sizeof(buf), src, dst, s, 0, packet::tcp_rst, 0);
		if (len && to_kernel && ::write(ns_.tun.get(), buf, len) >= 0)
			counters_.rsts_sent++;
		if (len && !to_kernel && send_to_client(f, buf, len) == 0)
			counters_.rsts_sent++;
		if (!also || other == seq)
			break;
	}
}

void BumblebeeService::rst_to_kernel(Flow &f)
{
	if (f.protocol != FlowProtocol::tcp || !f.has_slot ||
	    (f.state != FlowState::handshake && f.state != FlowState::upgraded) || !f.client_next_valid)
		return;
	send_rsts(f, true, f.client_next, f.kernel_ack_valid, f.kernel_ack);
}

void BumblebeeService::rst_to_client(Flow &f)
{
	if (f.protocol != FlowProtocol::tcp || f.state == FlowState::first_packet)
		return;
	if (f.client_ack_valid && f.kernel_next_valid) {
		/* The client has answered the SYN-ACK: it is established and wants seq == its rcv_nxt. */
		send_rsts(f, false, f.kernel_next, true, f.client_ack);
		return;
	}
	auto syn = packet::parse(f.first.data(), f.first.size());
	if (!syn)
		return;
	/* Only the SYN so far: answer it as a closed port would. */
	std::uint8_t buf[128];
	std::size_t len = packet::build_tcp_rst(buf, sizeof(buf), *syn);
	if (len && send_to_client(f, buf, len) == 0)
		counters_.rsts_sent++;
}

void BumblebeeService::refuse_client(Flow &f)
{
	if (f.protocol == FlowProtocol::tcp) {
		rst_to_client(f);
		return;
	}
	auto first = packet::parse(f.first.data(), f.first.size());
	if (!first)
		return;
	std::uint8_t buf[1280];
	/* port unreachable: ICMPv4 type 3 code 3, ICMPv6 type 1 code 4 */
	std::size_t len = packet::build_icmp_unreachable(buf, sizeof(buf), *first, f.server_ep.addr,
							 first->family == AF_INET ? 3 : 4);
	if (len)
		(void)send_to_client(f, buf, len); /* best effort: the flow is being refused */
}

} // namespace shoal::bumblebee
