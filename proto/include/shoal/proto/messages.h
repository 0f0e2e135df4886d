// Typed messages of every shoal op: strict decode_* of what arrives, encode() of what is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/proto/address.h>
#include <shoal/proto/envelope.h>

/*
 * How to use (a daemon):
 *
 *	auto req = parse_request(bytes, fds.size());
 *	if (!req) { send(encode_error(salvage_id(bytes), req.error())); close fds; return; }
 *	if (req->op == ops::splice) {
 *		auto splice = decode_splice(*req);
 *		if (!splice) { send(encode_error(req->id, splice.error())); close fds; return; }
 *		…
 *		send(encode(req->id, Accepted{task}));
 *	} else send(encode_error(req->id, unknown_op_failure(req->op)));
 *
 * A client does the mirror image: encode(id, Splice{…}) with the fds attached, then
 * parse_reply() and decode_accepted()/decode_done()/decode_error_reply() by op.
 *
 * Every decode_* returns bad_request naming the field ("<field>: …") for an unknown field,
 * a missing required field, or a wrong type or range, and bad_fds ("splice takes 2 fds,
 * got 1") for the wrong number of fds. Checks run: fd count, unknown fields (the first in
 * key order), then each field in the order of the PROTOCOL.md table. An optional field
 * given as null is a wrong type, except metadata, where null is a value. Decoders never
 * throw, and they refuse a message whose op is not theirs (internal: a caller bug).
 *
 * encode(id, X) writes the op and fields of X; id is the request's id (events carry the id
 * of the request that started the task). The comment on each struct says which fds the
 * sender attaches, in order. encode() does not validate; send what decode_* would accept.
 */

namespace shoal::proto {

/* The wire names of every op. */
namespace ops {
/* common requests, and the replies that share their name */
inline constexpr std::string_view hello = "hello";
inline constexpr std::string_view status = "status";
inline constexpr std::string_view list = "list";
inline constexpr std::string_view upgrade_daemon = "upgrade_daemon";
inline constexpr std::string_view welcome = "welcome";
inline constexpr std::string_view handed_over = "handed_over";
inline constexpr std::string_view error = "error";
/* splicer */
inline constexpr std::string_view splice = "splice";
inline constexpr std::string_view accepted = "accepted";
inline constexpr std::string_view done = "done";
inline constexpr std::string_view cancel = "cancel";
inline constexpr std::string_view cancelling = "cancelling";
/* bumblebee */
inline constexpr std::string_view upgrade = "upgrade";
inline constexpr std::string_view upgraded = "upgraded";
inline constexpr std::string_view syn = "syn";
inline constexpr std::string_view confirm = "confirm";
inline constexpr std::string_view confirmed = "confirmed";
inline constexpr std::string_view ended = "ended";
/* fish */
inline constexpr std::string_view lease = "lease";
inline constexpr std::string_view leased = "leased";
inline constexpr std::string_view release = "release";
inline constexpr std::string_view released = "released";
inline constexpr std::string_view lease_ended = "lease_ended";
} // namespace ops

inline constexpr std::size_t kMaxOwnerLength = 128;
/* Task and lease ids are daemon-chosen strings of 1..kMaxTaskIdLength bytes. */
inline constexpr std::size_t kMaxTaskIdLength = 128;
/* metadata, serialised compactly (as it is echoed back), in bytes. */
inline constexpr std::size_t kMaxMetadataBytes = 16384;
inline constexpr std::uint64_t kMaxIdleTimeoutMs = 86'400'000;
inline constexpr std::uint64_t kMaxUpgradeTimeoutMs = 600'000;

/*
 * The fds a message of this op carries, or nullopt for an op this library does not know
 * (an unknown op is answered with unknown_op, and its fds are closed).
 */
std::optional<std::size_t> expected_fds(std::string_view op);

/* How a task or lease ended; each event allows a subset (see the event's struct). */
enum class EndReason {
	eof,          /* the peer(s) closed: normal end */
	error,        /* a socket error; the event's error field names the errno */
	idle_timeout, /* splicer: no byte either way for idle_timeout_ms */
	timeout,      /* bumblebee: no handshake within timeout_ms */
	rejected,     /* bumblebee: confirm with accept=false */
	cancelled,    /* splicer: a cancel request */
	released,     /* fish: a release request */
	shutdown,     /* the daemon stopped without handing its work to a successor */
};
std::string_view to_string(EndReason reason);
std::optional<EndReason> end_reason_from_string(std::string_view name);

enum class FlowProtocol { tcp, udp };
std::string_view to_string(FlowProtocol protocol);
std::optional<FlowProtocol> flow_protocol_from_string(std::string_view name);

/* "ECONNRESET" for ECONNRESET; "E<number>" for a value glibc has no name for. */
std::string errno_name(int err);

/* ---- common to every daemon ---- */

/* hello {owner}: 0 fds. owner: 1..128 bytes of [A-Za-z0-9._:@-]. */
struct Hello {
	std::string owner;
	friend bool operator==(const Hello &, const Hello &) = default;
};
/* welcome {owner, mailbox}: 0 fds. mailbox: results kept for this owner, sent right after. */
struct Welcome {
	std::string owner;
	std::uint64_t mailbox = 0;
	friend bool operator==(const Welcome &, const Welcome &) = default;
};
/* status {}: 0 fds. */
struct StatusRequest {
	friend bool operator==(const StatusRequest &, const StatusRequest &) = default;
};
/*
 * status {…}: 0 fds. Free-form object; by convention daemon, version, protocol, pid,
 * uptime_ms and counters (an object of integers). Keys v/op/id are not allowed.
 */
struct StatusReply {
	nlohmann::json fields = nlohmann::json::object();
	friend bool operator==(const StatusReply &, const StatusReply &) = default;
};
/* list {offset?}: 0 fds. offset: skip that many tasks (a page of a long list). */
struct ListRequest {
	std::uint64_t offset = 0;
	friend bool operator==(const ListRequest &, const ListRequest &) = default;
};
/*
 * list {tasks, total, next_offset}: 0 fds. tasks: an array of objects, one per task,
 * daemon-specific keys; as many as fit in one message from offset on. total: all tasks.
 * next_offset: where the next page starts, null after the last one.
 */
struct ListReply {
	nlohmann::json tasks = nlohmann::json::array();
	std::uint64_t total = 0;
	std::optional<std::uint64_t> next_offset;
	friend bool operator==(const ListReply &, const ListReply &) = default;
};
/* upgrade_daemon {}: 0 fds. Replace the running daemon by a fresh exec, losslessly. */
struct UpgradeDaemon {
	friend bool operator==(const UpgradeDaemon &, const UpgradeDaemon &) = default;
};
/* handed_over {old_pid, new_pid, tasks, duration_ms}: 0 fds. */
struct HandedOver {
	std::int64_t old_pid = 0;
	std::int64_t new_pid = 0;
	std::uint64_t tasks = 0;
	std::uint64_t duration_ms = 0;
	friend bool operator==(const HandedOver &, const HandedOver &) = default;
};
/* error {code, message}: 0 fds (what encode_error writes). */
struct ErrorReply {
	ErrorCode code = ErrorCode::internal;
	std::string message;
	friend bool operator==(const ErrorReply &, const ErrorReply &) = default;
};

/* ---- splicer ---- */

/* splice {metadata?, idle_timeout_ms?}: fds [a, b]. */
struct Splice {
	nlohmann::json metadata; /* any JSON, null when absent */
	std::optional<std::uint64_t> idle_timeout_ms; /* 1..86400000; absent: the daemon's default */
	friend bool operator==(const Splice &, const Splice &) = default;
};
/* accepted {task}: 0 fds. */
struct Accepted {
	std::string task;
	friend bool operator==(const Accepted &, const Accepted &) = default;
};
/*
 * done {task, metadata, reason, error?, bytes_a_to_b, bytes_b_to_a, duration_ms, unsent_*?}: fds [a, b] (+ a pipe per unsent count)
 * (the same sockets, in the same order). reason: eof, error, idle_timeout, cancelled,
 * shutdown. error: present exactly when reason is error.
 */
struct Done {
	std::string task;
	nlohmann::json metadata;
	EndReason reason = EndReason::eof;
	std::optional<std::string> error;
	std::uint64_t bytes_a_to_b = 0;
	std::uint64_t bytes_b_to_a = 0;
	std::uint64_t duration_ms = 0;
	/*
	 * Bytes splicer had read but not yet written when a cancel or a stop ended the relay (the
	 * other side was not reading). Each non-zero count comes with one more fd after [a, b]
	 * (a→b's first): the read end of a pipe holding exactly those bytes, then EOF. Nothing is
	 * lost: a caller that carries on with the sockets writes them itself.
	 */
	std::uint64_t unsent_a_to_b = 0;
	std::uint64_t unsent_b_to_a = 0;
	friend bool operator==(const Done &, const Done &) = default;
};
/* cancel {task}: 0 fds. */
struct Cancel {
	std::string task;
	friend bool operator==(const Cancel &, const Cancel &) = default;
};
/* cancelling {task}: 0 fds; done with reason cancelled follows. */
struct Cancelling {
	std::string task;
	friend bool operator==(const Cancelling &, const Cancelling &) = default;
};

/* ---- bumblebee ---- */

/* A flow as the client sees it: src is the client's address, dst the server it dialled. */
struct Flow {
	FlowProtocol protocol = FlowProtocol::tcp;
	std::string src; /* "ip:port" / "[ipv6]:port", same family as dst */
	std::string dst;
	friend bool operator==(const Flow &, const Flow &) = default;
};
/* upgrade {metadata?, protocol?, timeout_ms?, confirm?}: fds [flow]. */
struct Upgrade {
	nlohmann::json metadata;
	FlowProtocol protocol = FlowProtocol::tcp;
	std::optional<std::uint64_t> timeout_ms; /* 1..600000; absent: the daemon's default */
	bool confirm = false;                    /* send syn and wait for confirm */
	friend bool operator==(const Upgrade &, const Upgrade &) = default;
};
/* upgraded {task, flow}: fds [socket] (a connected kernel TCP, or UDP, socket). */
struct Upgraded {
	std::string task;
	Flow flow;
	friend bool operator==(const Upgraded &, const Upgraded &) = default;
};
/* syn {task, flow}: 0 fds; an event, sent when upgrade had confirm=true. */
struct Syn {
	std::string task;
	Flow flow;
	friend bool operator==(const Syn &, const Syn &) = default;
};
/* confirm {task, accept}: 0 fds. */
struct Confirm {
	std::string task;
	bool accept = false;
	friend bool operator==(const Confirm &, const Confirm &) = default;
};
/* confirmed {task}: 0 fds. */
struct Confirmed {
	std::string task;
	friend bool operator==(const Confirmed &, const Confirmed &) = default;
};
/*
 * ended {task, metadata, reason, error?, bytes_in, bytes_out, packets_in, packets_out,
 * duration_ms}: 0 fds. *_out: client → server (read from the flow socket); *_in:
 * server → client (written to it); bytes are whole IP packets. reason: eof, error,
 * timeout, rejected, shutdown. error: present exactly when reason is error.
 */
struct Ended {
	std::string task;
	nlohmann::json metadata;
	EndReason reason = EndReason::eof;
	std::optional<std::string> error;
	std::uint64_t bytes_in = 0;
	std::uint64_t bytes_out = 0;
	std::uint64_t packets_in = 0;
	std::uint64_t packets_out = 0;
	std::uint64_t duration_ms = 0;
	friend bool operator==(const Ended &, const Ended &) = default;
};

/* ---- fish ---- */

/* lease {metadata?, ip?, ports?}: fds [packets]. */
struct Lease {
	nlohmann::json metadata;
	std::optional<std::string> ip;     /* an IPv4 or IPv6 address, no port */
	std::optional<PortRange> ports;    /* "lo-hi" on the wire */
	friend bool operator==(const Lease &, const Lease &) = default;
};
/* leased {lease, ip, ports}: 0 fds. */
struct Leased {
	std::string lease;
	std::string ip;
	PortRange ports;
	friend bool operator==(const Leased &, const Leased &) = default;
};
/* release {lease}: 0 fds. */
struct Release {
	std::string lease;
	friend bool operator==(const Release &, const Release &) = default;
};
/* released {lease}: 0 fds; lease_ended with reason released follows. */
struct Released {
	std::string lease;
	friend bool operator==(const Released &, const Released &) = default;
};
/*
 * lease_ended {lease, metadata, reason, error?, flows, packets_out, packets_in}: 0 fds.
 * flows: distinct 5-tuples egressed; packets_out: client → internet; packets_in: replies
 * delivered back. reason: eof (packet socket closed), error, released, shutdown.
 */
struct LeaseEnded {
	std::string lease;
	nlohmann::json metadata;
	EndReason reason = EndReason::eof;
	std::optional<std::string> error;
	std::uint64_t flows = 0;
	std::uint64_t packets_out = 0;
	std::uint64_t packets_in = 0;
	friend bool operator==(const LeaseEnded &, const LeaseEnded &) = default;
};

/* ---- decoding (never throws) ---- */

/* requests, as a daemon receives them */
Expected<Hello, Failure> decode_hello(const Request &req);
Expected<StatusRequest, Failure> decode_status_request(const Request &req);
Expected<ListRequest, Failure> decode_list_request(const Request &req);
Expected<UpgradeDaemon, Failure> decode_upgrade_daemon(const Request &req);
Expected<Splice, Failure> decode_splice(const Request &req);
Expected<Cancel, Failure> decode_cancel(const Request &req);
Expected<Upgrade, Failure> decode_upgrade(const Request &req);
Expected<Confirm, Failure> decode_confirm(const Request &req);
Expected<Lease, Failure> decode_lease(const Request &req);
Expected<Release, Failure> decode_release(const Request &req);

/* replies and events, as a client receives them */
Expected<Welcome, Failure> decode_welcome(const Reply &rep);
Expected<StatusReply, Failure> decode_status_reply(const Reply &rep);
Expected<ListReply, Failure> decode_list_reply(const Reply &rep);
Expected<HandedOver, Failure> decode_handed_over(const Reply &rep);
Expected<ErrorReply, Failure> decode_error_reply(const Reply &rep);
Expected<Accepted, Failure> decode_accepted(const Reply &rep);
Expected<Done, Failure> decode_done(const Reply &rep);
Expected<Cancelling, Failure> decode_cancelling(const Reply &rep);
Expected<Upgraded, Failure> decode_upgraded(const Reply &rep);
Expected<Syn, Failure> decode_syn(const Reply &rep);
Expected<Confirmed, Failure> decode_confirmed(const Reply &rep);
Expected<Ended, Failure> decode_ended(const Reply &rep);
Expected<Leased, Failure> decode_leased(const Reply &rep);
Expected<Released, Failure> decode_released(const Reply &rep);
Expected<LeaseEnded, Failure> decode_lease_ended(const Reply &rep);

/* ---- encoding (throws only std::bad_alloc) ---- */

using Id = std::optional<std::string>;

std::string encode(const Id &id, const Hello &m);
std::string encode(const Id &id, const Welcome &m);
std::string encode(const Id &id, const StatusRequest &m);
std::string encode(const Id &id, const StatusReply &m);
std::string encode(const Id &id, const ListRequest &m);
std::string encode(const Id &id, const ListReply &m);
std::string encode(const Id &id, const UpgradeDaemon &m);
std::string encode(const Id &id, const HandedOver &m);
std::string encode(const Id &id, const ErrorReply &m);
std::string encode(const Id &id, const Splice &m);
std::string encode(const Id &id, const Accepted &m);
std::string encode(const Id &id, const Done &m);
std::string encode(const Id &id, const Cancel &m);
std::string encode(const Id &id, const Cancelling &m);
std::string encode(const Id &id, const Upgrade &m);
std::string encode(const Id &id, const Upgraded &m);
std::string encode(const Id &id, const Syn &m);
std::string encode(const Id &id, const Confirm &m);
std::string encode(const Id &id, const Confirmed &m);
std::string encode(const Id &id, const Ended &m);
std::string encode(const Id &id, const Lease &m);
std::string encode(const Id &id, const Leased &m);
std::string encode(const Id &id, const Release &m);
std::string encode(const Id &id, const Released &m);
std::string encode(const Id &id, const LeaseEnded &m);

} // namespace shoal::proto
