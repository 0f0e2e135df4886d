// bumblebee requests: upgrade (validate, read the first packet, start the handshake) and confirm.
#include <sys/socket.h>

#include <shoal/proto/messages.h>
#include <shoal/service/log.h>

#include "bumblebee_service.h"

namespace shoal::bumblebee {

using proto::ErrorCode;
using proto::FlowProtocol;

namespace {

/* Why fd cannot carry a flow, or nothing when it can. */
std::optional<std::string> unfit_flow_socket(int fd, bool &seqpacket)
{
	int type = 0;
	socklen_t len = sizeof(type);
	if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return errno == ENOTSOCK ? "not a socket" : "unusable (" + service::errno_name(errno) + ")";
	if (type != SOCK_SEQPACKET && type != SOCK_DGRAM)
		return "not a SOCK_SEQPACKET or SOCK_DGRAM socket";
	seqpacket = type == SOCK_SEQPACKET;
	sockaddr_storage peer{};
	len = sizeof(peer);
	if (::getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &len) < 0)
		return "not connected";
	return std::nullopt;
}

std::int64_t wall_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

} // namespace

void BumblebeeService::handle_upgrade(service::Call &call)
{
	const std::string &id = call.request.id;
	auto req = proto::decode_upgrade(call.request);
	if (!req) {
		if (req.error().code == ErrorCode::bad_fds)
			counters_.refused_bad_fds++;
		rt_->fail(call.client, id, req.error().code, req.error().message);
		return;
	}
	if (flows_.size() >= max_flows_) {
		counters_.refused_busy++;
		rt_->fail(call.client, id, ErrorCode::busy,
			  "flow limit reached (flows.max is " + std::to_string(max_flows_) + ")");
		return;
	}

	if (pending_.size() >= max_pending_) {
		counters_.refused_busy++;
		rt_->fail(call.client, id, ErrorCode::busy,
			  "too many flows waiting for their handshake (flows.max_pending is " +
				  std::to_string(max_pending_) + ")");
		return;
	}

	/* After the limits: the order of PROTOCOL.md §2, step 7. */
	bool seqpacket = true;
	if (auto why = unfit_flow_socket(call.fds[0].get(), seqpacket)) {
		counters_.refused_bad_fds++;
		rt_->fail(call.client, id, ErrorCode::bad_fds, "flow (fd 0): " + *why);
		return;
	}
	auto flow = std::make_unique<Flow>();
	flow->task = "b" + std::to_string(next_task_++);
	flow->client = call.client;
	flow->request_id = id;
	flow->metadata = req->metadata.dump();
	flow->protocol = req->protocol;
	flow->confirm = req->confirm;
	flow->seqpacket = seqpacket;
	flow->sock = std::move(call.fds[0]);
	flow->timeout_ms = req->timeout_ms.value_or(default_timeout_ms_);
	flow->started_wall_ms = wall_ms();
	flow->deadline_ms = now() + flow->timeout_ms;
	flow->last_active_ms = now();
	size_send_buffer(flow->sock.get());

	/* From here on the answer is late (upgraded, ended or an error once the first packet is read). */
	rt_->detach(call.client);
	flow->detached = true;
	counters_.upgrades++;
	Flow &f = *add_flow(std::move(flow));
	pending_.insert(&f);
	if (!watch(f)) {
		refuse(f, ErrorCode::internal, "flow: cannot poll the socket");
		return;
	}
	take_first_packet(f);
	run_deferred_ends();
}

bool BumblebeeService::take_first_packet(Flow &f)
{
	std::uint8_t *buf = buffers_.data();
	ssize_t n = ::recv(f.sock.get(), buf, kBufSize, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return false;
		end(f, proto::EndReason::error, errno);
		return true;
	}
	if (n == 0 && f.seqpacket) {
		end(f, proto::EndReason::eof);
		return true;
	}
	if (static_cast<std::size_t>(n) > kBufSize) {
		refuse(f, ErrorCode::bad_request, "flow: the first packet is larger than 65536 bytes");
		return true;
	}
	auto p = packet::parse(buf, static_cast<std::size_t>(n));
	if (!p) {
		counters_.refused_bad_first++;
		refuse(f, ErrorCode::bad_request,
		       std::string("flow: the first packet is not a valid IP packet (") + packet::to_string(p.error()) + ")");
		return true;
	}
	if (f.protocol == FlowProtocol::tcp) {
		constexpr std::uint8_t others = packet::tcp_ack | packet::tcp_rst | packet::tcp_fin;
		if (p->proto != packet::proto_tcp || !(p->tcp_flags & packet::tcp_syn) || (p->tcp_flags & others)) {
			counters_.refused_bad_first++;
			refuse(f, ErrorCode::bad_request, "flow: the first packet is not a TCP SYN");
			return true;
		}
		begin_tcp(f, *p);
	} else {
		if (p->proto != packet::proto_udp) {
			counters_.refused_bad_first++;
			refuse(f, ErrorCode::bad_request, "flow: the first packet is not a UDP datagram");
			return true;
		}
		begin_udp(f, *p);
	}
	return true;
}

void BumblebeeService::begin_tcp(Flow &f, packet::Packet &syn)
{
	SlotPool *pool = pool_for(syn.family);
	if (!pool) {
		counters_.refused_exhausted++;
		refuse(f, ErrorCode::exhausted, "flow: no IPv6 NAT pool (namespace.inet6 is empty)");
		return;
	}
	auto addr = pool->acquire(now());
	if (!addr) {
		counters_.refused_exhausted++;
		refuse(f, ErrorCode::exhausted,
		       "flow: no free NAT address (" + std::to_string(pool->in_use()) + " in use, " +
			       std::to_string(pool->held_down()) + " held down)");
		return;
	}
	f.slot_ep = packet::Endpoint{*addr, syn.sport};
	f.has_slot = true;
	f.client_next = syn.seq + 1 + static_cast<std::uint32_t>(syn.payload_len());
	f.client_next_valid = true;
	by_slot_[f.slot_ep] = &f;
	keep_first(f, syn);
	if (!hold_for_confirm(f))
		accept_flow(f);
}

void BumblebeeService::begin_udp(Flow &f, packet::Packet &first)
{
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		refuse(f, ErrorCode::internal, "flow: cannot create the payload socket (" + service::errno_name(errno) + ")");
		return;
	}
	f.payload = UniqueFd(sv[0]);
	f.app = UniqueFd(sv[1]);
	for (int fd : sv)
		size_send_buffer(fd);
	keep_first(f, first);
	if (!hold_for_confirm(f))
		accept_flow(f);
}

void BumblebeeService::keep_first(Flow &f, const packet::Packet &first)
{
	f.client_ep = first.src();
	f.server_ep = first.dst();
	f.first.assign(first.data, first.data + first.len);
	f.packets_out++;
	f.bytes_out += first.len;
}

bool BumblebeeService::hold_for_confirm(Flow &f)
{
	if (!f.confirm)
		return false;
	f.state = FlowState::confirm;
	rt_->deliver(f.client, "syn", {{"task", f.task}, {"flow", f.flow_json()}}, {}, f.request_id);
	return true;
}

void BumblebeeService::size_send_buffer(int fd)
{
	/* Bursts toward the client must not overflow a default-sized socket buffer at a 64 KiB MTU. */
	if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf_, sizeof(sndbuf_)) < 0)
		::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf_, sizeof(sndbuf_));
}

void BumblebeeService::accept_flow(Flow &f)
{
	auto p = packet::parse(f.first.data(), f.first.size());
	if (!p) { /* it parsed when it arrived; a copy cannot fail */
		end(f, proto::EndReason::error, EINVAL);
		return;
	}
	if (f.protocol == FlowProtocol::tcp) {
		f.state = FlowState::handshake;
		/* inject() rewrites in place: keep the client's own SYN for a RST on timeout. */
		std::vector<std::uint8_t> copy = f.first;
		auto q = packet::parse(copy.data(), copy.size());
		inject(f, *q);
		return;
	}
	/* UDP: the first datagram waits in the caller's socket, then the socket is theirs. */
	if (::send(f.payload.get(), p->payload(), p->payload_len(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		counters_.drop_congested++;
	if (!f.payload_poll.start(rt_->loop(), f.payload.get(), &f, [](uv_poll_t *h, int status, int events) {
		    auto *fl = static_cast<Flow *>(h->data);
		    static_cast<BumblebeeService *>(fl->owner)->on_payload_event(*fl, status, events);
	    })) {
		end(f, proto::EndReason::error, ENOMEM);
		return;
	}
	deliver_upgraded(f, std::move(f.app));
}

void BumblebeeService::reject_flow(Flow &f)
{
	refuse_client(f);
	end(f, proto::EndReason::rejected);
}

void BumblebeeService::refuse(Flow &f, ErrorCode code, const std::string &message)
{
	rt_->deliver_error(f.client, f.request_id, code, message);
	if (f.has_slot) {
		by_slot_.erase(f.slot_ep);
		pool_for(f.slot_ep.addr.family)->release(f.slot_ep.addr, now());
		f.has_slot = false;
	}
	pending_.erase(&f);
	std::string task = f.task;
	flows_.erase(task);
}

void BumblebeeService::deliver_upgraded(Flow &f, UniqueFd socket)
{
	f.state = FlowState::upgraded;
	pending_.erase(&f);
	f.first.clear();
	f.first.shrink_to_fit();
	counters_.upgraded++;
	std::vector<UniqueFd> fds;
	fds.push_back(std::move(socket));
	rt_->deliver(f.client, "upgraded", {{"task", f.task}, {"flow", f.flow_json()}}, std::move(fds), f.request_id);
}

void BumblebeeService::handle_confirm(service::Call &call)
{
	auto req = proto::decode_confirm(call.request);
	if (!req) {
		rt_->fail(call.client, call.request.id, req.error().code, req.error().message);
		return;
	}
	auto it = flows_.find(req->task);
	if (it == flows_.end() || it->second->state != FlowState::confirm) {
		rt_->fail(call.client, call.request.id, ErrorCode::not_found,
			  "task: \"" + req->task.substr(0, 64) + "\" is not waiting for a confirm");
		return;
	}
	Flow &f = *it->second;
	bool same = f.client.owner.empty() ? f.client.connection == call.client.connection
					   : f.client.owner == call.client.owner;
	if (!same) {
		rt_->fail(call.client, call.request.id, ErrorCode::denied, "task: belongs to another client");
		return;
	}
	rt_->reply(call.client, call.request.id, "confirmed", {{"task", f.task}});
	if (req->accept)
		accept_flow(f);
	else
		reject_flow(f);
	run_deferred_ends();
}

} // namespace shoal::bumblebee
