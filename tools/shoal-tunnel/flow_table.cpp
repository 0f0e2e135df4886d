// FlowTable: the packet path — parse, look up, make flows, sendmmsg to flow sockets, recvmmsg from them, RSTs.
#include "flow_table.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "uv_util.h"

namespace shoal::tunnel {

namespace {

constexpr std::size_t kRxSlot = 65536; /* the largest IP packet */
/* How long a closed TCP flow's stragglers are dropped quietly, and how many such flows are kept. */
constexpr std::uint64_t kStragglerGraceMs = 2000;
constexpr std::size_t kMaxRecentlyClosed = 65536;

/*
 * Each flow socket's send buffer. AF_UNIX charges a whole skb per datagram against it,
 * and at MTU 65520 the default (~208 KiB) holds three packets: a burst would be dropped.
 * 4 MiB holds a TCP window's worth. Root may exceed wmem_max (SO_SNDBUFFORCE).
 */
constexpr int kFlowSocketBuffer = 4 * 1024 * 1024;

void size_buffer(int fd)
{
	int size = kFlowSocketBuffer;
	if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
		::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

std::string label(const packet::FlowKey &key)
{
	return key.src.to_string() + " -> " + key.dst.to_string();
}

} // namespace

FlowTable::FlowTable(uv_loop_t *loop, TunDevice &tun, Report &report, std::uint64_t start_ms,
		     std::string id_prefix, std::size_t max_flows, Handlers handlers)
	: loop_(loop), tun_(tun), report_(report), counters_(report.counters), start_ms_(start_ms),
	  id_prefix_(std::move(id_prefix)), max_flows_(max_flows), handlers_(std::move(handlers))
{
	std::memset(tx_msgs_, 0, sizeof tx_msgs_);
	for (std::size_t i = 0; i < TunDevice::kBatch; i++) {
		tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[i];
		tx_msgs_[i].msg_hdr.msg_iovlen = 1;
	}
	rx_buffer_.reset(new std::uint8_t[kRxSlot * kRxBatch]);
	std::memset(rx_msgs_, 0, sizeof rx_msgs_);
	for (std::size_t i = 0; i < kRxBatch; i++) {
		rx_iov_[i] = {rx_buffer_.get() + i * kRxSlot, kRxSlot};
		rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
		rx_msgs_[i].msg_hdr.msg_iovlen = 1;
	}
}

FlowTable::~FlowTable()
{
	for (auto &[id, flow] : by_id_)
		close_and_delete(flow->poll);
}

Flow *FlowTable::find(const std::string &id)
{
	auto it = by_id_.find(id);
	return it == by_id_.end() ? nullptr : it->second.get();
}

std::vector<Flow *> FlowTable::snapshot() const
{
	std::vector<Flow *> all;
	all.reserve(by_id_.size());
	for (const auto &[id, flow] : by_id_)
		all.push_back(flow.get());
	return all;
}

void FlowTable::dispatch(std::span<PacketSlot> batch)
{
	run_flow_ = nullptr;
	run_len_ = 0;
	for (const PacketSlot &slot : batch) {
		auto parsed = packet::parse(slot.data, slot.len);
		if (!parsed) {
			counters_.unparseable++;
			continue;
		}
		const packet::Packet &p = *parsed;
		if (p.proto != packet::proto_tcp && p.proto != packet::proto_udp) {
			/* ICMP (ping, errors about replies): bumblebee carries TCP and UDP flows only. */
			counters_.not_tcp_udp++;
			continue;
		}
		Flow *flow = route(p);
		if (!flow)
			continue;
		if (flow != run_flow_)
			flush_run();
		run_flow_ = flow;
		tx_iov_[run_len_] = {p.data, p.len};
		run_len_++;
	}
	flush_run();

	/* Their first packets are in their sockets now: only then ask bumblebee to take them. */
	std::vector<Flow *> made;
	made.swap(new_flows_);
	for (Flow *flow : made)
		if (handlers_.on_new_flow)
			handlers_.on_new_flow(*flow); /* may erase it */
}

Flow *FlowTable::route(const packet::Packet &p)
{
	auto it = by_key_.find(p.key());
	if (p.proto == packet::proto_udp) {
		if (it != by_key_.end())
			return it->second;
		return create(p);
	}
	const bool syn = (p.tcp_flags & packet::tcp_syn) && !(p.tcp_flags & packet::tcp_ack);
	if (it != by_key_.end()) {
		Flow *flow = it->second;
		if (!syn || p.seq == flow->isn) {
			if (syn)
				counters_.syn_retransmits++;
			return flow;
		}
		/*
		 * A SYN with a new sequence number on a known 4-tuple is a new connection (the old
		 * one is over from PROGRAM's side). The old flow keeps its socket until bumblebee
		 * closes it, but PROGRAM's packets go to the new one.
		 */
		flow->in_table = false;
		by_key_.erase(it);
		return create(p);
	}
	if (!recently_closed_.empty()) {
		auto rc = recently_closed_.find(p.key());
		if (rc != recently_closed_.end()) {
			if (!syn && uv_now(loop_) < rc->second) {
				counters_.late_packets++;
				return nullptr;
			}
			recently_closed_.erase(rc);
		}
	}
	if (syn)
		return create(p);
	/* No flow and not a SYN: the connection is unknown here, so say so as a host would. */
	if (!(p.tcp_flags & packet::tcp_rst))
		send_rst(p);
	return nullptr;
}

Flow *FlowTable::create(const packet::Packet &p)
{
	if (by_id_.size() >= max_flows_) {
		counters_.flows_busy++;
		if (p.proto == packet::proto_tcp) {
			send_rst(p);
		} else {
			std::uint8_t out[1400];
			std::size_t n = packet::build_icmp_unreachable(out, sizeof out, p, p.dst_addr(),
								       p.family == AF_INET ? 3 : 4);
			if (n && tun_.write(out, n))
				counters_.icmp_unreachable_sent++;
		}
		return nullptr;
	}
	int sv[2];
	/* SEQPACKET: one datagram per IP packet, ordered, and an EOF when bumblebee closes its end. */
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		counters_.flows_busy++;
		log(LogLevel::warn, "socketpair for a new flow: %s", errno_text(errno).c_str());
		if (p.proto == packet::proto_tcp)
			send_rst(p);
		return nullptr;
	}
	auto flow = std::make_unique<Flow>();
	flow->table = this;
	flow->sock.reset(sv[0]);
	flow->peer.reset(sv[1]);
	size_buffer(sv[0]);
	size_buffer(sv[1]);
	flow->id = id_prefix_ + std::to_string(++next_id_);
	flow->key = p.key();
	flow->protocol = p.proto == packet::proto_tcp ? proto::FlowProtocol::tcp : proto::FlowProtocol::udp;
	flow->isn = p.seq;
	flow->first.assign(p.data, p.data + p.len);

	FlowRecord &rec = report_.add_flow();
	rec.id = flow->id;
	rec.flow = label(flow->key);
	rec.protocol = std::string(proto::to_string(flow->protocol));
	rec.started_ms = uv_now(loop_) - start_ms_;
	flow->record = &rec;
	(p.proto == packet::proto_tcp ? counters_.flows_tcp : counters_.flows_udp)++;

	flow->poll = new uv_poll_t;
	if (uv_poll_init(loop_, flow->poll, flow->sock.get()) < 0) {
		delete flow->poll;
		flow->poll = nullptr;
		rec.error = "cannot poll the flow socket";
		rec.reason = "refused";
		if (p.proto == packet::proto_tcp)
			send_rst(p);
		return nullptr;
	}
	flow->poll->data = flow.get();
	uv_poll_start(flow->poll, UV_READABLE | UV_DISCONNECT, [](uv_poll_t *h, int status, int) {
		auto *f = static_cast<Flow *>(h->data);
		guarded("flow socket", [&] { f->table->on_socket_event(*f, status); });
	});
	flow->in_table = true;
	Flow *raw = flow.get();
	by_key_[raw->key] = raw;
	by_id_.emplace(raw->id, std::move(flow));
	new_flows_.push_back(raw);
	return raw;
}

void FlowTable::flush_run()
{
	if (run_len_ == 0)
		return;
	Flow *flow = run_flow_;
	std::size_t len = run_len_;
	run_flow_ = nullptr;
	run_len_ = 0;
	std::size_t sent = 0;
	bool closed = !flow->sock.is_valid();
	if (!closed) {
		int n;
		do
			n = ::sendmmsg(flow->sock.get(), tx_msgs_, static_cast<unsigned>(len), MSG_DONTWAIT | MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		if (n > 0)
			sent = static_cast<std::size_t>(n);
		else if (n < 0 && errno != EAGAIN && errno != ENOBUFS)
			closed = true;
	}
	/*
	 * What bumblebee has no room for is dropped, as a congested router would: TCP recovers,
	 * and PROGRAM's other flows are not held up behind this one (EPIPE: bumblebee closed it;
	 * the poll reports that).
	 */
	flow->record->tun_packets_out += sent;
	if (sent < len) {
		flow->record->tun_drops += len - sent;
		(closed ? counters_.flow_closed_drops : counters_.flow_queue_drops) += len - sent;
	}
}

void FlowTable::on_socket_event(Flow &flow, int status)
{
	int closed_error = -1; /* -1: still open; 0: bumblebee closed it; else the socket's errno */
	if (status < 0) {
		/*
		 * POLLERR (libuv says EBADF and has stopped the handle). ECONNRESET is how a
		 * SEQPACKET socket learns that bumblebee closed its end with our packets unread:
		 * an ordinary end. Reading SO_ERROR clears it, so what bumblebee sent before
		 * closing can still be read and delivered below.
		 */
		int err = 0;
		socklen_t len = sizeof err;
		if (::getsockopt(flow.sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		closed_error = (err == ECONNRESET || err == EPIPE || err == 0) ? 0 : err;
	}
	/* Open: one batch per wake-up (level-triggered, so the rest comes next turn). Closing: all of it. */
	for (unsigned round = 0; round < (closed_error < 0 ? 1u : 64u); round++) {
		int n;
		do
			n = ::recvmmsg(flow.sock.get(), rx_msgs_, kRxBatch, MSG_DONTWAIT, nullptr);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN && closed_error < 0)
				closed_error = (errno == ECONNRESET || errno == EPIPE) ? 0 : errno;
			break;
		}
		bool eof = false;
		for (int i = 0; i < n; i++) {
			std::size_t len = rx_msgs_[i].msg_len;
			if (len == 0) {
				/* A SEQPACKET read of 0 bytes is the end: bumblebee closed its side of the flow. */
				eof = true;
				break;
			}
			if (rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) {
				counters_.flow_recv_truncated++;
				continue;
			}
			if (tun_.write(static_cast<std::uint8_t *>(rx_iov_[i].iov_base), len))
				flow.record->tun_packets_in++;
		}
		if (eof) {
			if (closed_error < 0)
				closed_error = 0;
			break;
		}
		if (static_cast<std::size_t>(n) < kRxBatch)
			break;
	}
	if (closed_error < 0)
		return;
	close_socket(flow);
	if (handlers_.on_socket_closed)
		handlers_.on_socket_closed(flow, closed_error);
}

void FlowTable::close_socket(Flow &flow)
{
	close_and_delete(flow.poll);
	flow.poll = nullptr;
	flow.sock.reset();
	if (flow.in_table) {
		auto it = by_key_.find(flow.key);
		if (it != by_key_.end() && it->second == &flow)
			by_key_.erase(it);
		flow.in_table = false;
		if (flow.protocol == proto::FlowProtocol::tcp && recently_closed_.size() < kMaxRecentlyClosed)
			recently_closed_[flow.key] = uv_now(loop_) + kStragglerGraceMs;
	}
}

void FlowTable::prune(std::uint64_t now_ms)
{
	for (auto it = recently_closed_.begin(); it != recently_closed_.end();)
		it = now_ms >= it->second ? recently_closed_.erase(it) : std::next(it);
}

void FlowTable::erase(Flow &flow)
{
	close_socket(flow);
	std::string id = flow.id; /* the key must outlive the flow it names */
	by_id_.erase(id);

}

void FlowTable::send_rst(const packet::Packet &to)
{
	std::uint8_t out[128];
	std::size_t n = packet::build_tcp_rst(out, sizeof out, to);
	if (n && tun_.write(out, n))
		counters_.rst_sent++;
}

void FlowTable::refuse(Flow &flow)
{
	if (flow.first.empty())
		return;
	/* parse() wants a mutable buffer; a copy keeps flow.first as it was. */
	std::vector<std::uint8_t> copy = flow.first;
	auto parsed = packet::parse(copy.data(), copy.size());
	if (!parsed)
		return;
	if (flow.protocol == proto::FlowProtocol::tcp) {
		send_rst(*parsed);
		return;
	}
	std::uint8_t out[1400];
	std::size_t n = packet::build_icmp_unreachable(out, sizeof out, *parsed, parsed->dst_addr(),
						       parsed->family == AF_INET ? 3 : 4);
	if (n && tun_.write(out, n))
		counters_.icmp_unreachable_sent++;
}

} // namespace shoal::tunnel
