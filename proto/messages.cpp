// Strict decoding and encoding of every op's fields (the tables of PROTOCOL.md, in code).
#include <shoal/proto/messages.h>

#include <string.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <new>

#include "detail.h"

namespace shoal::proto {

using nlohmann::json;

namespace {

using detail::printable;

/* Field-level problems are reported as a Failure; nullopt means the field was fine. */
using Problem = std::optional<Failure>;

Failure bad(std::string_view field, std::string_view what)
{
	return Failure{ErrorCode::bad_request, std::string(field) + ": " + std::string(what)};
}

bool is_envelope_key(std::string_view key)
{
	return key == "v" || key == "op" || key == "id";
}

/*
 * The part every decoder shares: the op is the decoder's own (a caller bug otherwise), the
 * fd count is the op's, and every key is an envelope key or one of allowed.
 */
Problem check_shape(std::string_view actual_op, std::string_view op, const json &body, std::size_t nfds,
		    std::initializer_list<std::string_view> allowed)
{
	if (actual_op != op)
		return Failure{ErrorCode::internal, "the decoder of " + std::string(op) + " was given op \"" +
							    printable(actual_op) + "\""};
	std::size_t want = expected_fds(op).value_or(0);
	if (nfds != want)
		return Failure{ErrorCode::bad_fds, std::string(op) + " takes " + std::to_string(want) +
							   (want == 1 ? " fd" : " fds") + ", got " +
							   std::to_string(nfds)};
	if (!body.is_object())
		return Failure{ErrorCode::bad_request, "message: not a JSON object"};
	for (const auto &item : body.items()) {
		const std::string &key = item.key();
		if (is_envelope_key(key))
			continue;
		if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
			return bad(printable(key), "unknown field");
	}
	return std::nullopt;
}

const json *find(const json &body, std::string_view name)
{
	auto it = body.find(name);
	return it == body.end() ? nullptr : &*it;
}

/* A string of min..max bytes. */
Problem get_string(const json &body, std::string_view name, std::size_t min, std::size_t max,
		   std::string &out)
{
	const json *v = find(body, name);
	if (v == nullptr)
		return bad(name, "missing");
	const std::string *s = v->get_ptr<const std::string *>();
	if (s == nullptr || s->size() < min || s->size() > max) {
		if (min == 0)
			return bad(name, "must be a string of at most " + std::to_string(max) + " bytes");
		return bad(name, "must be a string of " + std::to_string(min) + " to " + std::to_string(max) +
					 " bytes");
	}
	out = *s;
	return std::nullopt;
}

/* A task or lease id: 1..kMaxTaskIdLength bytes. */
Problem get_task_id(const json &body, std::string_view name, std::string &out)
{
	return get_string(body, name, 1, kMaxTaskIdLength, out);
}

bool valid_owner(std::string_view s)
{
	if (s.empty() || s.size() > kMaxOwnerLength)
		return false;
	for (char c : s) {
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

Problem get_owner(const json &body, std::string &out)
{
	const json *v = find(body, "owner");
	if (v == nullptr)
		return bad("owner", "missing");
	const std::string *s = v->get_ptr<const std::string *>();
	if (s == nullptr || !valid_owner(*s))
		return bad("owner", "must be a string of 1 to " + std::to_string(kMaxOwnerLength) +
					    " bytes of A-Z a-z 0-9 . _ : @ -");
	out = *s;
	return std::nullopt;
}

/* An integer lo..hi; required, or optional (left unset when absent). */
Problem get_uint(const json &body, std::string_view name, std::uint64_t lo, std::uint64_t hi,
		 std::optional<std::uint64_t> &out, bool required)
{
	const json *v = find(body, name);
	if (v == nullptr) {
		if (required)
			return bad(name, "missing");
		out.reset();
		return std::nullopt;
	}
	/*
	 * The parser stores non-negative integers as number_unsigned, negative ones as
	 * number_integer; a hand-built json may hold a non-negative number_integer too.
	 */
	bool ok = v->is_number_unsigned() || (v->is_number_integer() && v->get<std::int64_t>() >= 0);
	std::uint64_t n = ok ? v->get<std::uint64_t>() : 0;
	if (!ok || n < lo || n > hi)
		return bad(name, "must be an integer between " + std::to_string(lo) + " and " +
					 std::to_string(hi));
	out = n;
	return std::nullopt;
}

Problem get_counter(const json &body, std::string_view name, std::uint64_t &out)
{
	std::optional<std::uint64_t> v;
	if (auto p = get_uint(body, name, 0, std::numeric_limits<std::uint64_t>::max(), v, true))
		return p;
	out = *v;
	return std::nullopt;
}

Problem get_pid(const json &body, std::string_view name, std::int64_t &out)
{
	std::optional<std::uint64_t> v;
	if (auto p = get_uint(body, name, 1, std::numeric_limits<std::int32_t>::max(), v, true))
		return p;
	out = std::int64_t(*v);
	return std::nullopt;
}

Problem get_bool(const json &body, std::string_view name, bool &out, bool required)
{
	const json *v = find(body, name);
	if (v == nullptr)
		return required ? Problem(bad(name, "missing")) : std::nullopt;
	if (!v->is_boolean())
		return bad(name, "must be true or false");
	out = v->get<bool>();
	return std::nullopt;
}

/* Any JSON; absent is null. Bounded by its compact serialisation, which is how it is echoed. */
Problem get_metadata(const json &body, json &out)
{
	const json *v = find(body, "metadata");
	if (v == nullptr) {
		out = nullptr;
		return std::nullopt;
	}
	if (v->dump(-1, ' ', false, json::error_handler_t::replace).size() > kMaxMetadataBytes)
		return bad("metadata", "larger than " + std::to_string(kMaxMetadataBytes) + " bytes");
	out = *v;
	return std::nullopt;
}

/* label: the field's name in messages ("flow.protocol" for the one inside flow). */
Problem get_protocol(const json &body, std::string_view name, std::string_view label, FlowProtocol &out,
		     bool required)
{
	const json *v = find(body, name);
	if (v == nullptr)
		return required ? Problem(bad(label, "missing")) : std::nullopt;
	const std::string *s = v->get_ptr<const std::string *>();
	auto p = s ? flow_protocol_from_string(*s) : std::nullopt;
	if (!p)
		return bad(label, "must be \"tcp\" or \"udp\"");
	out = *p;
	return std::nullopt;
}

Problem get_reason(const json &body, std::initializer_list<EndReason> allowed, EndReason &out)
{
	const json *v = find(body, "reason");
	if (v == nullptr)
		return bad("reason", "missing");
	const std::string *s = v->get_ptr<const std::string *>();
	auto r = s ? end_reason_from_string(*s) : std::nullopt;
	if (!r || std::find(allowed.begin(), allowed.end(), *r) == allowed.end()) {
		std::string list;
		for (auto a : allowed) {
			if (!list.empty())
				list += ", ";
			list += to_string(a);
		}
		return bad("reason", "must be one of " + list);
	}
	out = *r;
	return std::nullopt;
}

bool valid_errno_name(std::string_view s)
{
	if (s.size() < 2 || s.size() > 32 || s[0] != 'E')
		return false;
	return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); });
}

/* error: required when reason is error, refused otherwise. */
Problem get_error_name(const json &body, EndReason reason, std::optional<std::string> &out)
{
	const json *v = find(body, "error");
	if (reason != EndReason::error) {
		if (v != nullptr)
			return bad("error", "only allowed when reason is error");
		out.reset();
		return std::nullopt;
	}
	if (v == nullptr)
		return bad("error", "missing (required when reason is error)");
	const std::string *s = v->get_ptr<const std::string *>();
	if (s == nullptr || !valid_errno_name(*s))
		return bad("error", "must be an errno name such as \"ECONNRESET\"");
	out = *s;
	return std::nullopt;
}

Problem get_ip(const json &body, std::string_view name, std::optional<std::string> &out, bool required)
{
	const json *v = find(body, name);
	if (v == nullptr) {
		if (required)
			return bad(name, "missing");
		out.reset();
		return std::nullopt;
	}
	const std::string *s = v->get_ptr<const std::string *>();
	if (s == nullptr || !parse_ip(*s))
		return bad(name, "must be an IPv4 or IPv6 address");
	out = *s;
	return std::nullopt;
}

Problem get_ports(const json &body, std::string_view name, std::optional<PortRange> &out, bool required)
{
	const json *v = find(body, name);
	if (v == nullptr) {
		if (required)
			return bad(name, "missing");
		out.reset();
		return std::nullopt;
	}
	const std::string *s = v->get_ptr<const std::string *>();
	auto range = s ? parse_port_range(*s) : std::nullopt;
	if (!range)
		return bad(name, "must be a port range \"lo-hi\" with 1 <= lo <= hi <= 65535");
	out = range;
	return std::nullopt;
}

Problem get_endpoint(const json &flow, std::string_view name, std::string &out, sockaddr_storage &addr)
{
	const json *v = find(flow, name);
	std::string field = "flow." + std::string(name);
	if (v == nullptr)
		return bad(field, "missing");
	const std::string *s = v->get_ptr<const std::string *>();
	auto parsed = s ? parse_endpoint(*s) : std::nullopt;
	if (!parsed)
		return bad(field, "must be \"ip:port\" or \"[ipv6]:port\"");
	out = *s;
	addr = *parsed;
	return std::nullopt;
}

Problem get_flow(const json &body, Flow &out)
{
	const json *v = find(body, "flow");
	if (v == nullptr)
		return bad("flow", "missing");
	if (!v->is_object())
		return bad("flow", "must be an object {protocol, src, dst}");
	for (const auto &item : v->items()) {
		const std::string &key = item.key();
		if (key != "protocol" && key != "src" && key != "dst")
			return bad("flow." + printable(key), "unknown field");
	}
	if (auto p = get_protocol(*v, "protocol", "flow.protocol", out.protocol, true))
		return p;
	sockaddr_storage src{}, dst{};
	if (auto p = get_endpoint(*v, "src", out.src, src))
		return p;
	if (auto p = get_endpoint(*v, "dst", out.dst, dst))
		return p;
	if (src.ss_family != dst.ss_family)
		return bad("flow.dst", "must be the same address family as flow.src");
	return std::nullopt;
}

json flow_json(const Flow &f)
{
	return json{{"protocol", std::string(to_string(f.protocol))}, {"src", f.src}, {"dst", f.dst}};
}

/*
 * Runs a decoder body, turning a stray exception into internal: decoders sit on the data
 * path and must not throw.
 */
template <typename T, typename F>
Expected<T, Failure> guarded(F &&f)
{
	try {
		return f();
	} catch (const std::bad_alloc &) {
		return Unexpected(Failure{ErrorCode::internal, "out of memory decoding the message"});
	} catch (const std::exception &e) {
		/* Only reachable with a hand-built Request whose json the parser could not have made. */
		return Unexpected(Failure{ErrorCode::internal, "decoding the message: " + printable(e.what(), 200)});
	}
}

#define SHOAL_CHECK(expr)                                   \
	do {                                                \
		if (auto problem_ = (expr))                 \
			return Unexpected(std::move(*problem_)); \
	} while (0)

} // namespace

std::optional<std::size_t> expected_fds(std::string_view op)
{
	static constexpr std::pair<std::string_view, std::size_t> table[] = {
		{ops::hello, 0},       {ops::status, 0},    {ops::list, 0},
		{ops::upgrade_daemon, 0}, {ops::welcome, 0}, {ops::handed_over, 0},
		{ops::error, 0},       {ops::splice, 2},    {ops::accepted, 0},
		{ops::done, 2},        {ops::cancel, 0},    {ops::cancelling, 0},
		{ops::upgrade, 1},     {ops::upgraded, 1},  {ops::syn, 0},
		{ops::confirm, 0},     {ops::confirmed, 0}, {ops::ended, 0},
		{ops::lease, 1},       {ops::leased, 0},    {ops::release, 0},
		{ops::released, 0},    {ops::lease_ended, 0},
	};
	for (const auto &[name, n] : table)
		if (name == op)
			return n;
	return std::nullopt;
}

std::string_view to_string(EndReason reason)
{
	switch (reason) {
	case EndReason::eof: return "eof";
	case EndReason::error: return "error";
	case EndReason::idle_timeout: return "idle_timeout";
	case EndReason::timeout: return "timeout";
	case EndReason::rejected: return "rejected";
	case EndReason::cancelled: return "cancelled";
	case EndReason::released: return "released";
	case EndReason::shutdown: return "shutdown";
	}
	return "error";
}

std::optional<EndReason> end_reason_from_string(std::string_view name)
{
	static constexpr EndReason all[] = {
		EndReason::eof,	      EndReason::error,	   EndReason::idle_timeout, EndReason::timeout,
		EndReason::rejected, EndReason::cancelled, EndReason::released,	    EndReason::shutdown,
	};
	for (auto r : all)
		if (to_string(r) == name)
			return r;
	return std::nullopt;
}

std::string_view to_string(FlowProtocol protocol)
{
	return protocol == FlowProtocol::udp ? "udp" : "tcp";
}

std::optional<FlowProtocol> flow_protocol_from_string(std::string_view name)
{
	if (name == "tcp")
		return FlowProtocol::tcp;
	if (name == "udp")
		return FlowProtocol::udp;
	return std::nullopt;
}

std::string errno_name(int err)
{
	const char *name = strerrorname_np(err);
	if (name != nullptr)
		return name;
	return "E" + std::to_string(err);
}

/* ---- requests ---- */

Expected<Hello, Failure> decode_hello(const Request &req)
{
	return guarded<Hello>([&]() -> Expected<Hello, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::hello, req.body, req.nfds, {"owner"}));
		Hello m;
		SHOAL_CHECK(get_owner(req.body, m.owner));
		return m;
	});
}

Expected<StatusRequest, Failure> decode_status_request(const Request &req)
{
	return guarded<StatusRequest>([&]() -> Expected<StatusRequest, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::status, req.body, req.nfds, {}));
		return StatusRequest{};
	});
}

Expected<ListRequest, Failure> decode_list_request(const Request &req)
{
	return guarded<ListRequest>([&]() -> Expected<ListRequest, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::list, req.body, req.nfds, {"offset"}));
		ListRequest m;
		std::optional<std::uint64_t> offset;
		SHOAL_CHECK(get_uint(req.body, "offset", 0, std::numeric_limits<std::uint32_t>::max(), offset, false));
		m.offset = offset.value_or(0);
		return m;
	});
}

Expected<UpgradeDaemon, Failure> decode_upgrade_daemon(const Request &req)
{
	return guarded<UpgradeDaemon>([&]() -> Expected<UpgradeDaemon, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::upgrade_daemon, req.body, req.nfds, {}));
		return UpgradeDaemon{};
	});
}

Expected<Splice, Failure> decode_splice(const Request &req)
{
	return guarded<Splice>([&]() -> Expected<Splice, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::splice, req.body, req.nfds, {"metadata", "idle_timeout_ms"}));
		Splice m;
		SHOAL_CHECK(get_metadata(req.body, m.metadata));
		SHOAL_CHECK(get_uint(req.body, "idle_timeout_ms", 1, kMaxIdleTimeoutMs, m.idle_timeout_ms, false));
		return m;
	});
}

Expected<Cancel, Failure> decode_cancel(const Request &req)
{
	return guarded<Cancel>([&]() -> Expected<Cancel, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::cancel, req.body, req.nfds, {"task"}));
		Cancel m;
		SHOAL_CHECK(get_task_id(req.body, "task", m.task));
		return m;
	});
}

Expected<Upgrade, Failure> decode_upgrade(const Request &req)
{
	return guarded<Upgrade>([&]() -> Expected<Upgrade, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::upgrade, req.body, req.nfds,
					{"metadata", "protocol", "timeout_ms", "confirm"}));
		Upgrade m;
		SHOAL_CHECK(get_metadata(req.body, m.metadata));
		SHOAL_CHECK(get_protocol(req.body, "protocol", "protocol", m.protocol, false));
		SHOAL_CHECK(get_uint(req.body, "timeout_ms", 1, kMaxUpgradeTimeoutMs, m.timeout_ms, false));
		SHOAL_CHECK(get_bool(req.body, "confirm", m.confirm, false));
		return m;
	});
}

Expected<Confirm, Failure> decode_confirm(const Request &req)
{
	return guarded<Confirm>([&]() -> Expected<Confirm, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::confirm, req.body, req.nfds, {"task", "accept"}));
		Confirm m;
		SHOAL_CHECK(get_task_id(req.body, "task", m.task));
		SHOAL_CHECK(get_bool(req.body, "accept", m.accept, true));
		return m;
	});
}

Expected<Lease, Failure> decode_lease(const Request &req)
{
	return guarded<Lease>([&]() -> Expected<Lease, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::lease, req.body, req.nfds, {"metadata", "ip", "ports"}));
		Lease m;
		SHOAL_CHECK(get_metadata(req.body, m.metadata));
		SHOAL_CHECK(get_ip(req.body, "ip", m.ip, false));
		SHOAL_CHECK(get_ports(req.body, "ports", m.ports, false));
		return m;
	});
}

Expected<Release, Failure> decode_release(const Request &req)
{
	return guarded<Release>([&]() -> Expected<Release, Failure> {
		SHOAL_CHECK(check_shape(req.op, ops::release, req.body, req.nfds, {"lease"}));
		Release m;
		SHOAL_CHECK(get_task_id(req.body, "lease", m.lease));
		return m;
	});
}

/* ---- replies and events ---- */

Expected<Welcome, Failure> decode_welcome(const Reply &rep)
{
	return guarded<Welcome>([&]() -> Expected<Welcome, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::welcome, rep.body, rep.nfds, {"owner", "mailbox"}));
		Welcome m;
		SHOAL_CHECK(get_owner(rep.body, m.owner));
		SHOAL_CHECK(get_counter(rep.body, "mailbox", m.mailbox));
		return m;
	});
}

Expected<StatusReply, Failure> decode_status_reply(const Reply &rep)
{
	return guarded<StatusReply>([&]() -> Expected<StatusReply, Failure> {
		if (rep.op != ops::status)
			return Unexpected(Failure{ErrorCode::internal,
						  "the decoder of status was given op \"" + printable(rep.op) + "\""});
		if (rep.nfds != 0)
			return Unexpected(Failure{ErrorCode::bad_fds, "status takes 0 fds, got " +
									      std::to_string(rep.nfds)});
		if (!rep.body.is_object())
			return Unexpected(Failure{ErrorCode::bad_request, "message: not a JSON object"});
		StatusReply m;
		for (const auto &item : rep.body.items())
			if (!is_envelope_key(item.key()))
				m.fields[item.key()] = item.value();
		return m;
	});
}

Expected<ListReply, Failure> decode_list_reply(const Reply &rep)
{
	return guarded<ListReply>([&]() -> Expected<ListReply, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::list, rep.body, rep.nfds, {"tasks", "total", "next_offset"}));
		const json *tasks = find(rep.body, "tasks");
		if (tasks == nullptr)
			return Unexpected(bad("tasks", "missing"));
		if (!tasks->is_array() ||
		    !std::all_of(tasks->begin(), tasks->end(), [](const json &t) { return t.is_object(); }))
			return Unexpected(bad("tasks", "must be an array of objects"));
		ListReply m;
		m.tasks = *tasks;
		SHOAL_CHECK(get_counter(rep.body, "total", m.total));
		const json *next = find(rep.body, "next_offset");
		if (next == nullptr)
			return Unexpected(bad("next_offset", "missing"));
		if (!next->is_null()) {
			std::optional<std::uint64_t> n;
			SHOAL_CHECK(get_uint(rep.body, "next_offset", 1, std::numeric_limits<std::uint64_t>::max(), n, true));
			m.next_offset = n;
		}
		return m;
	});
}

Expected<HandedOver, Failure> decode_handed_over(const Reply &rep)
{
	return guarded<HandedOver>([&]() -> Expected<HandedOver, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::handed_over, rep.body, rep.nfds,
					{"old_pid", "new_pid", "tasks", "duration_ms"}));
		HandedOver m;
		SHOAL_CHECK(get_pid(rep.body, "old_pid", m.old_pid));
		SHOAL_CHECK(get_pid(rep.body, "new_pid", m.new_pid));
		SHOAL_CHECK(get_counter(rep.body, "tasks", m.tasks));
		SHOAL_CHECK(get_counter(rep.body, "duration_ms", m.duration_ms));
		return m;
	});
}

Expected<ErrorReply, Failure> decode_error_reply(const Reply &rep)
{
	return guarded<ErrorReply>([&]() -> Expected<ErrorReply, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::error, rep.body, rep.nfds, {"code", "message"}));
		ErrorReply m;
		const json *code = find(rep.body, "code");
		if (code == nullptr)
			return Unexpected(bad("code", "missing"));
		const std::string *s = code->get_ptr<const std::string *>();
		auto c = s ? error_code_from_string(*s) : std::nullopt;
		if (!c)
			return Unexpected(bad("code", "must be one of bad_request, bad_fds, unsupported_version, "
						      "unknown_op, busy, not_found, denied, exhausted, internal"));
		m.code = *c;
		SHOAL_CHECK(get_string(rep.body, "message", 0, kMaxMessageSize, m.message));
		return m;
	});
}

Expected<Accepted, Failure> decode_accepted(const Reply &rep)
{
	return guarded<Accepted>([&]() -> Expected<Accepted, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::accepted, rep.body, rep.nfds, {"task"}));
		Accepted m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		return m;
	});
}

Expected<Done, Failure> decode_done(const Reply &rep)
{
	return guarded<Done>([&]() -> Expected<Done, Failure> {
		/* 2 fds, plus one pipe per unsent count: checked once the counts are known. */
		std::size_t shape_fds = rep.nfds >= 2 && rep.nfds <= 4 ? 2 : rep.nfds;
		SHOAL_CHECK(check_shape(rep.op, ops::done, rep.body, shape_fds,
					{"task", "metadata", "reason", "error", "bytes_a_to_b", "bytes_b_to_a",
					 "duration_ms", "unsent_a_to_b", "unsent_b_to_a"}));
		Done m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		SHOAL_CHECK(get_metadata(rep.body, m.metadata));
		SHOAL_CHECK(get_reason(rep.body,
				       {EndReason::eof, EndReason::error, EndReason::idle_timeout,
					EndReason::cancelled, EndReason::shutdown},
				       m.reason));
		SHOAL_CHECK(get_error_name(rep.body, m.reason, m.error));
		SHOAL_CHECK(get_counter(rep.body, "bytes_a_to_b", m.bytes_a_to_b));
		SHOAL_CHECK(get_counter(rep.body, "bytes_b_to_a", m.bytes_b_to_a));
		SHOAL_CHECK(get_counter(rep.body, "duration_ms", m.duration_ms));
		for (auto [name, out] : {std::pair{"unsent_a_to_b", &m.unsent_a_to_b},
					 std::pair{"unsent_b_to_a", &m.unsent_b_to_a}}) {
			std::optional<std::uint64_t> n;
			SHOAL_CHECK(get_uint(rep.body, name, 1, std::numeric_limits<std::uint64_t>::max(), n, false));
			*out = n.value_or(0);
		}
		std::size_t want = 2 + (m.unsent_a_to_b ? 1 : 0) + (m.unsent_b_to_a ? 1 : 0);
		if (rep.nfds != want)
			return Unexpected(Failure{ErrorCode::bad_fds, "done takes " + std::to_string(want) +
									      " fds, got " + std::to_string(rep.nfds)});
		return m;
	});
}

Expected<Cancelling, Failure> decode_cancelling(const Reply &rep)
{
	return guarded<Cancelling>([&]() -> Expected<Cancelling, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::cancelling, rep.body, rep.nfds, {"task"}));
		Cancelling m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		return m;
	});
}

Expected<Upgraded, Failure> decode_upgraded(const Reply &rep)
{
	return guarded<Upgraded>([&]() -> Expected<Upgraded, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::upgraded, rep.body, rep.nfds, {"task", "flow"}));
		Upgraded m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		SHOAL_CHECK(get_flow(rep.body, m.flow));
		return m;
	});
}

Expected<Syn, Failure> decode_syn(const Reply &rep)
{
	return guarded<Syn>([&]() -> Expected<Syn, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::syn, rep.body, rep.nfds, {"task", "flow"}));
		Syn m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		SHOAL_CHECK(get_flow(rep.body, m.flow));
		return m;
	});
}

Expected<Confirmed, Failure> decode_confirmed(const Reply &rep)
{
	return guarded<Confirmed>([&]() -> Expected<Confirmed, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::confirmed, rep.body, rep.nfds, {"task"}));
		Confirmed m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		return m;
	});
}

Expected<Ended, Failure> decode_ended(const Reply &rep)
{
	return guarded<Ended>([&]() -> Expected<Ended, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::ended, rep.body, rep.nfds,
					{"task", "metadata", "reason", "error", "bytes_in", "bytes_out",
					 "packets_in", "packets_out", "duration_ms"}));
		Ended m;
		SHOAL_CHECK(get_task_id(rep.body, "task", m.task));
		SHOAL_CHECK(get_metadata(rep.body, m.metadata));
		SHOAL_CHECK(get_reason(rep.body,
				       {EndReason::eof, EndReason::error, EndReason::timeout, EndReason::rejected,
					EndReason::shutdown},
				       m.reason));
		SHOAL_CHECK(get_error_name(rep.body, m.reason, m.error));
		SHOAL_CHECK(get_counter(rep.body, "bytes_in", m.bytes_in));
		SHOAL_CHECK(get_counter(rep.body, "bytes_out", m.bytes_out));
		SHOAL_CHECK(get_counter(rep.body, "packets_in", m.packets_in));
		SHOAL_CHECK(get_counter(rep.body, "packets_out", m.packets_out));
		SHOAL_CHECK(get_counter(rep.body, "duration_ms", m.duration_ms));
		return m;
	});
}

Expected<Leased, Failure> decode_leased(const Reply &rep)
{
	return guarded<Leased>([&]() -> Expected<Leased, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::leased, rep.body, rep.nfds, {"lease", "ip", "ports"}));
		Leased m;
		SHOAL_CHECK(get_task_id(rep.body, "lease", m.lease));
		std::optional<std::string> ip;
		SHOAL_CHECK(get_ip(rep.body, "ip", ip, true));
		m.ip = *ip;
		std::optional<PortRange> ports;
		SHOAL_CHECK(get_ports(rep.body, "ports", ports, true));
		m.ports = *ports;
		return m;
	});
}

Expected<Released, Failure> decode_released(const Reply &rep)
{
	return guarded<Released>([&]() -> Expected<Released, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::released, rep.body, rep.nfds, {"lease"}));
		Released m;
		SHOAL_CHECK(get_task_id(rep.body, "lease", m.lease));
		return m;
	});
}

Expected<LeaseEnded, Failure> decode_lease_ended(const Reply &rep)
{
	return guarded<LeaseEnded>([&]() -> Expected<LeaseEnded, Failure> {
		SHOAL_CHECK(check_shape(rep.op, ops::lease_ended, rep.body, rep.nfds,
					{"lease", "metadata", "reason", "error", "flows", "packets_out",
					 "packets_in"}));
		LeaseEnded m;
		SHOAL_CHECK(get_task_id(rep.body, "lease", m.lease));
		SHOAL_CHECK(get_metadata(rep.body, m.metadata));
		SHOAL_CHECK(get_reason(rep.body,
				       {EndReason::eof, EndReason::error, EndReason::released, EndReason::shutdown},
				       m.reason));
		SHOAL_CHECK(get_error_name(rep.body, m.reason, m.error));
		SHOAL_CHECK(get_counter(rep.body, "flows", m.flows));
		SHOAL_CHECK(get_counter(rep.body, "packets_out", m.packets_out));
		SHOAL_CHECK(get_counter(rep.body, "packets_in", m.packets_in));
		return m;
	});
}

/* ---- encoding ---- */

std::string encode(const Id &id, const Hello &m)
{
	return encode_message(id, ops::hello, json{{"owner", m.owner}});
}

std::string encode(const Id &id, const Welcome &m)
{
	return encode_message(id, ops::welcome, json{{"owner", m.owner}, {"mailbox", m.mailbox}});
}

std::string encode(const Id &id, const StatusRequest &)
{
	return encode_message(id, ops::status);
}

std::string encode(const Id &id, const StatusReply &m)
{
	return encode_message(id, ops::status, m.fields);
}

std::string encode(const Id &id, const ListRequest &m)
{
	return encode_message(id, ops::list, m.offset ? json{{"offset", m.offset}} : json(nullptr));
}

std::string encode(const Id &id, const ListReply &m)
{
	return encode_message(id, ops::list,
			      json{{"tasks", m.tasks},
				   {"total", m.total},
				   {"next_offset", m.next_offset ? json(*m.next_offset) : json(nullptr)}});
}

std::string encode(const Id &id, const UpgradeDaemon &)
{
	return encode_message(id, ops::upgrade_daemon);
}

std::string encode(const Id &id, const HandedOver &m)
{
	return encode_message(id, ops::handed_over,
			      json{{"old_pid", m.old_pid},
				   {"new_pid", m.new_pid},
				   {"tasks", m.tasks},
				   {"duration_ms", m.duration_ms}});
}

std::string encode(const Id &id, const ErrorReply &m)
{
	return encode_error(id, m.code, m.message);
}

std::string encode(const Id &id, const Splice &m)
{
	json f{{"metadata", m.metadata}};
	if (m.idle_timeout_ms)
		f["idle_timeout_ms"] = *m.idle_timeout_ms;
	return encode_message(id, ops::splice, f);
}

std::string encode(const Id &id, const Accepted &m)
{
	return encode_message(id, ops::accepted, json{{"task", m.task}});
}

std::string encode(const Id &id, const Done &m)
{
	json f{{"task", m.task},
	       {"metadata", m.metadata},
	       {"reason", std::string(to_string(m.reason))},
	       {"bytes_a_to_b", m.bytes_a_to_b},
	       {"bytes_b_to_a", m.bytes_b_to_a},
	       {"duration_ms", m.duration_ms}};
	if (m.error)
		f["error"] = *m.error;
	if (m.unsent_a_to_b)
		f["unsent_a_to_b"] = m.unsent_a_to_b;
	if (m.unsent_b_to_a)
		f["unsent_b_to_a"] = m.unsent_b_to_a;
	return encode_message(id, ops::done, f);
}

std::string encode(const Id &id, const Cancel &m)
{
	return encode_message(id, ops::cancel, json{{"task", m.task}});
}

std::string encode(const Id &id, const Cancelling &m)
{
	return encode_message(id, ops::cancelling, json{{"task", m.task}});
}

std::string encode(const Id &id, const Upgrade &m)
{
	json f{{"metadata", m.metadata},
	       {"protocol", std::string(to_string(m.protocol))},
	       {"confirm", m.confirm}};
	if (m.timeout_ms)
		f["timeout_ms"] = *m.timeout_ms;
	return encode_message(id, ops::upgrade, f);
}

std::string encode(const Id &id, const Upgraded &m)
{
	return encode_message(id, ops::upgraded, json{{"task", m.task}, {"flow", flow_json(m.flow)}});
}

std::string encode(const Id &id, const Syn &m)
{
	return encode_message(id, ops::syn, json{{"task", m.task}, {"flow", flow_json(m.flow)}});
}

std::string encode(const Id &id, const Confirm &m)
{
	return encode_message(id, ops::confirm, json{{"task", m.task}, {"accept", m.accept}});
}

std::string encode(const Id &id, const Confirmed &m)
{
	return encode_message(id, ops::confirmed, json{{"task", m.task}});
}

std::string encode(const Id &id, const Ended &m)
{
	json f{{"task", m.task},
	       {"metadata", m.metadata},
	       {"reason", std::string(to_string(m.reason))},
	       {"bytes_in", m.bytes_in},
	       {"bytes_out", m.bytes_out},
	       {"packets_in", m.packets_in},
	       {"packets_out", m.packets_out},
	       {"duration_ms", m.duration_ms}};
	if (m.error)
		f["error"] = *m.error;
	return encode_message(id, ops::ended, f);
}

std::string encode(const Id &id, const Lease &m)
{
	json f{{"metadata", m.metadata}};
	if (m.ip)
		f["ip"] = *m.ip;
	if (m.ports)
		f["ports"] = format_port_range(*m.ports);
	return encode_message(id, ops::lease, f);
}

std::string encode(const Id &id, const Leased &m)
{
	return encode_message(id, ops::leased,
			      json{{"lease", m.lease}, {"ip", m.ip}, {"ports", format_port_range(m.ports)}});
}

std::string encode(const Id &id, const Release &m)
{
	return encode_message(id, ops::release, json{{"lease", m.lease}});
}

std::string encode(const Id &id, const Released &m)
{
	return encode_message(id, ops::released, json{{"lease", m.lease}});
}

std::string encode(const Id &id, const LeaseEnded &m)
{
	json f{{"lease", m.lease},
	       {"metadata", m.metadata},
	       {"reason", std::string(to_string(m.reason))},
	       {"flows", m.flows},
	       {"packets_out", m.packets_out},
	       {"packets_in", m.packets_in}};
	if (m.error)
		f["error"] = *m.error;
	return encode_message(id, ops::lease_ended, f);
}

} // namespace shoal::proto
