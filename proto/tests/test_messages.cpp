// Unit tests of every op's decoder and encoder: each refusal's exact code and message, and round trips.
#include <catch.hpp>

#include <cerrno>
#include <string>

#include <shoal/proto/messages.h>

using namespace shoal::proto;
using nlohmann::json;

namespace {

/* {"v":1,"op":op,"id":"r"[,fields]} */
std::string msg(std::string_view op, std::string_view fields = "")
{
	std::string s = "{\"v\":1,\"op\":\"" + std::string(op) + "\",\"id\":\"r\"";
	if (!fields.empty())
		s += "," + std::string(fields);
	return s + "}";
}

Request req(const std::string &text, std::size_t nfds)
{
	auto r = parse_request(text, nfds);
	INFO(text);
	REQUIRE(r.has_value());
	return *r;
}

Reply rep(const std::string &text, std::size_t nfds)
{
	auto r = parse_reply(text, nfds);
	INFO(text);
	REQUIRE(r.has_value());
	return *r;
}

#define CHECK_FAILS(expr, want_code, want_message)                       \
	do {                                                             \
		auto r_ = (expr);                                        \
		REQUIRE_FALSE(r_.has_value());                           \
		CHECK(to_string(r_.error().code) == to_string(want_code)); \
		CHECK(r_.error().message == (want_message));             \
	} while (0)

#define CHECK_BAD(expr, want_message) CHECK_FAILS(expr, ErrorCode::bad_request, want_message)

/* encode → parse → decode gives back the same value: what a daemon sends, a client reads. */
template <typename T, typename Decode>
void request_round_trip(const T &value, Decode decode)
{
	std::string wire = encode(std::string("rt-1"), value);
	INFO(wire);
	auto parsed = parse_request(wire, 0);
	REQUIRE(parsed.has_value());
	CHECK(parsed->id == "rt-1");
	parsed->nfds = expected_fds(parsed->op).value_or(0);
	auto back = decode(*parsed);
	REQUIRE(back.has_value());
	CHECK(*back == value);
}

template <typename T, typename Decode>
void reply_round_trip(const T &value, Decode decode, std::optional<std::string> id = std::string("rt-2"))
{
	std::string wire = encode(id, value);
	INFO(wire);
	auto parsed = parse_reply(wire, 0);
	REQUIRE(parsed.has_value());
	CHECK(parsed->id == id);
	parsed->nfds = expected_fds(parsed->op).value_or(0);
	auto back = decode(*parsed);
	REQUIRE(back.has_value());
	CHECK(*back == value);
}

const char *kFlow = R"("flow":{"protocol":"tcp","src":"192.0.2.7:40000","dst":"203.0.113.5:443"})";

} // namespace

TEST_CASE("expected_fds knows every op")
{
	CHECK(expected_fds("splice") == std::optional<std::size_t>(2));
	CHECK(expected_fds("done") == std::optional<std::size_t>(2));
	CHECK(expected_fds("upgrade") == std::optional<std::size_t>(1));
	CHECK(expected_fds("upgraded") == std::optional<std::size_t>(1));
	CHECK(expected_fds("lease") == std::optional<std::size_t>(1));
	for (auto op : {ops::hello, ops::status, ops::list, ops::upgrade_daemon, ops::welcome, ops::handed_over,
			ops::error, ops::accepted, ops::cancel, ops::cancelling, ops::syn, ops::confirm,
			ops::confirmed, ops::ended, ops::leased, ops::release, ops::released, ops::lease_ended})
		CHECK(expected_fds(op) == std::optional<std::size_t>(0));
	CHECK_FALSE(expected_fds("frobnicate").has_value());
}

TEST_CASE("enums have wire names")
{
	for (auto r : {EndReason::eof, EndReason::error, EndReason::idle_timeout, EndReason::timeout,
		       EndReason::rejected, EndReason::cancelled, EndReason::released, EndReason::shutdown})
		CHECK(end_reason_from_string(to_string(r)) == std::optional<EndReason>(r));
	CHECK(to_string(EndReason::idle_timeout) == "idle_timeout");
	CHECK_FALSE(end_reason_from_string("EOF").has_value());
	CHECK(to_string(FlowProtocol::udp) == "udp");
	CHECK(flow_protocol_from_string("tcp") == std::optional<FlowProtocol>(FlowProtocol::tcp));
	CHECK_FALSE(flow_protocol_from_string("sctp").has_value());
	CHECK(errno_name(ECONNRESET) == "ECONNRESET");
	CHECK(errno_name(EPIPE) == "EPIPE");
	CHECK(errno_name(99999) == "E99999");
}

TEST_CASE("decoders refuse another op's message as a caller bug")
{
	CHECK_FAILS(decode_splice(req(msg("status"), 0)), ErrorCode::internal,
		    "the decoder of splice was given op \"status\"");
	CHECK_FAILS(decode_done(rep(msg("accepted", R"("task":"t")"), 0)), ErrorCode::internal,
		    "the decoder of done was given op \"accepted\"");
	CHECK_FAILS(decode_status_reply(rep(msg("list"), 0)), ErrorCode::internal,
		    "the decoder of status was given op \"list\"");
}

/* ---- common ---- */

TEST_CASE("hello: owner is 1..128 bytes of [A-Za-z0-9._:@-]")
{
	auto h = decode_hello(req(msg("hello", R"("owner":"proxy-1@host:a.b_c")"), 0));
	REQUIRE(h.has_value());
	CHECK(h->owner == "proxy-1@host:a.b_c");
	CHECK(decode_hello(req(msg("hello", "\"owner\":\"" + std::string(128, 'o') + "\""), 0)).has_value());

	const std::string rule = "owner: must be a string of 1 to 128 bytes of A-Z a-z 0-9 . _ : @ -";
	CHECK_BAD(decode_hello(req(msg("hello"), 0)), "owner: missing");
	CHECK_BAD(decode_hello(req(msg("hello", R"("owner":"")"), 0)), rule);
	CHECK_BAD(decode_hello(req(msg("hello", "\"owner\":\"" + std::string(129, 'o') + "\""), 0)), rule);
	for (const char *bad : {"a b", "a/b", "caf\xc3\xa9", "a\\u0000", "a\\n", "a+b"})
		CHECK_BAD(decode_hello(req(msg("hello", "\"owner\":\"" + std::string(bad) + "\""), 0)), rule);
	CHECK_BAD(decode_hello(req(msg("hello", R"("owner":7)"), 0)), rule);
	CHECK_BAD(decode_hello(req(msg("hello", R"("owner":null)"), 0)), rule);
	CHECK_BAD(decode_hello(req(msg("hello", R"("owner":"p","mailbox":1)"), 0)), "mailbox: unknown field");
	CHECK_FAILS(decode_hello(req(msg("hello", R"("owner":"p")"), 1)), ErrorCode::bad_fds,
		    "hello takes 0 fds, got 1");
	request_round_trip(Hello{"p-1"}, decode_hello);
}

TEST_CASE("status, list, upgrade_daemon: no fields, no fds")
{
	CHECK(decode_status_request(req(msg("status"), 0)).has_value());
	CHECK(decode_list_request(req(msg("list"), 0)).has_value());
	CHECK(decode_upgrade_daemon(req(msg("upgrade_daemon"), 0)).has_value());
	CHECK_BAD(decode_status_request(req(msg("status", R"("verbose":true)"), 0)), "verbose: unknown field");
	CHECK_BAD(decode_list_request(req(msg("list", R"("filter":"x")"), 0)), "filter: unknown field");
	CHECK_BAD(decode_upgrade_daemon(req(msg("upgrade_daemon", R"("binary":"/x")"), 0)), "binary: unknown field");
	CHECK_FAILS(decode_status_request(req(msg("status"), 2)), ErrorCode::bad_fds, "status takes 0 fds, got 2");
	CHECK_FAILS(decode_list_request(req(msg("list"), 1)), ErrorCode::bad_fds, "list takes 0 fds, got 1");
	CHECK_FAILS(decode_upgrade_daemon(req(msg("upgrade_daemon"), 3)), ErrorCode::bad_fds,
		    "upgrade_daemon takes 0 fds, got 3");
	/* An unknown field's name is cut so the error still fits a datagram. */
	CHECK_BAD(decode_list_request(req(msg("list", "\"" + std::string(5000, 'k') + "\":1"), 0)),
		  std::string(64, 'k') + "\u2026: unknown field");
	request_round_trip(StatusRequest{}, decode_status_request);
	request_round_trip(ListRequest{}, decode_list_request);
	request_round_trip(ListRequest{250}, decode_list_request);
	CHECK_BAD(decode_list_request(req(msg("list", R"("offset":-1)"), 0)), "offset: must be an integer between 0 and 4294967295");
	request_round_trip(UpgradeDaemon{}, decode_upgrade_daemon);
	CHECK(encode(std::string("s"), StatusRequest{}) == R"({"v":1,"op":"status","id":"s"})");
}

TEST_CASE("welcome, status, list and handed_over replies")
{
	auto w = decode_welcome(rep(msg("welcome", R"("owner":"p","mailbox":3)"), 0));
	REQUIRE(w.has_value());
	CHECK(w->mailbox == 3);
	CHECK_BAD(decode_welcome(rep(msg("welcome", R"("owner":"p")"), 0)), "mailbox: missing");
	CHECK_BAD(decode_welcome(rep(msg("welcome", R"("owner":"p","mailbox":-1)"), 0)),
		  "mailbox: must be an integer between 0 and 18446744073709551615");
	reply_round_trip(Welcome{"p", 7}, decode_welcome);

	auto s = decode_status_reply(rep(msg("status", R"("daemon":"splicer","uptime_ms":5,"counters":{"a":1})"), 0));
	REQUIRE(s.has_value());
	CHECK(s->fields == json{{"daemon", "splicer"}, {"uptime_ms", 5}, {"counters", {{"a", 1}}}});
	CHECK_FAILS(decode_status_reply(rep(msg("status"), 1)), ErrorCode::bad_fds, "status takes 0 fds, got 1");
	reply_round_trip(StatusReply{json{{"daemon", "fish"}, {"protocol", 1}}}, decode_status_reply);
	reply_round_trip(StatusReply{}, decode_status_reply);

	auto l = decode_list_reply(rep(msg("list", R"("tasks":[{"task":"t-1"},{}],"total":5,"next_offset":2)"), 0));
	REQUIRE(l.has_value());
	CHECK(l->tasks.size() == 2);
	CHECK(l->total == 5);
	CHECK(l->next_offset == 2u);
	CHECK_BAD(decode_list_reply(rep(msg("list"), 0)), "tasks: missing");
	CHECK_BAD(decode_list_reply(rep(msg("list", R"("tasks":{})"), 0)), "tasks: must be an array of objects");
	CHECK_BAD(decode_list_reply(rep(msg("list", R"("tasks":[1])"), 0)), "tasks: must be an array of objects");
	CHECK_BAD(decode_list_reply(rep(msg("list", R"("tasks":[],"total":0)"), 0)), "next_offset: missing");
	reply_round_trip(ListReply{json::array({{{"task", "t-1"}, {"owner", "p"}}}), 1, std::nullopt}, decode_list_reply);
	reply_round_trip(ListReply{json::array({{{"task", "t-1"}}}), 9, 1}, decode_list_reply);

	auto h = decode_handed_over(rep(msg("handed_over", R"("old_pid":10,"new_pid":11,"tasks":2,"duration_ms":30)"), 0));
	REQUIRE(h.has_value());
	CHECK(*h == HandedOver{10, 11, 2, 30});
	CHECK_BAD(decode_handed_over(rep(msg("handed_over", R"("old_pid":0,"new_pid":11,"tasks":2,"duration_ms":30)"), 0)),
		  "old_pid: must be an integer between 1 and 2147483647");
	CHECK_BAD(decode_handed_over(rep(msg("handed_over", R"("old_pid":10,"tasks":2,"duration_ms":30)"), 0)),
		  "new_pid: missing");
	CHECK_BAD(decode_handed_over(rep(msg("handed_over", R"("old_pid":10,"new_pid":11,"tasks":2.5,"duration_ms":30)"), 0)),
		  "tasks: must be an integer between 0 and 18446744073709551615");
	reply_round_trip(HandedOver{100, 200, 5, 40}, decode_handed_over);
}

TEST_CASE("error replies")
{
	auto e = decode_error_reply(rep(R"({"v":1,"op":"error","id":null,"code":"busy","message":"m"})", 0));
	REQUIRE(e.has_value());
	CHECK(e->code == ErrorCode::busy);
	CHECK(e->message == "m");
	CHECK_BAD(decode_error_reply(rep(msg("error", R"("message":"m")"), 0)), "code: missing");
	CHECK_BAD(decode_error_reply(rep(msg("error", R"("code":"oops","message":"m")"), 0)),
		  "code: must be one of bad_request, bad_fds, unsupported_version, unknown_op, busy, "
		  "not_found, denied, exhausted, internal");
	CHECK_BAD(decode_error_reply(rep(msg("error", R"("code":"busy")"), 0)), "message: missing");
	CHECK_BAD(decode_error_reply(rep(msg("error", R"("code":"busy","message":1)"), 0)),
		  "message: must be a string of at most 65536 bytes");
	CHECK_BAD(decode_error_reply(rep(msg("error", R"("code":"busy","message":"m","hint":"h")"), 0)),
		  "hint: unknown field");
	reply_round_trip(ErrorReply{ErrorCode::denied, "uid 1000 is not allowed"}, decode_error_reply);
	reply_round_trip(ErrorReply{ErrorCode::bad_request, "message: empty"}, decode_error_reply, std::nullopt);
}

/* ---- splicer ---- */

TEST_CASE("splice: 2 fds, metadata, idle_timeout_ms")
{
	auto s = decode_splice(req(msg("splice"), 2));
	REQUIRE(s.has_value());
	CHECK(s->metadata.is_null());
	CHECK_FALSE(s->idle_timeout_ms.has_value());

	auto full = decode_splice(req(msg("splice", R"("metadata":{"conn":42,"tags":["a"]},"idle_timeout_ms":30000)"), 2));
	REQUIRE(full.has_value());
	CHECK(full->metadata == json{{"conn", 42}, {"tags", {"a"}}});
	CHECK(full->idle_timeout_ms == std::optional<std::uint64_t>(30000));

	for (const char *m : {"null", "1", "-2.5", "\"s\"", "true", "[]", "{}", "[[[{\"a\":null}]]]"}) {
		auto r = decode_splice(req(msg("splice", "\"metadata\":" + std::string(m)), 2));
		REQUIRE(r.has_value());
		CHECK(r->metadata == json::parse(m));
	}

	/* The limit is on the compact serialisation: a 16382-byte string is 16384 with its quotes. */
	CHECK(decode_splice(req(msg("splice", "\"metadata\":\"" + std::string(16382, 'm') + "\""), 2)).has_value());
	CHECK_BAD(decode_splice(req(msg("splice", "\"metadata\":\"" + std::string(16383, 'm') + "\""), 2)),
		  "metadata: larger than 16384 bytes");

	CHECK(decode_splice(req(msg("splice", R"("idle_timeout_ms":1)"), 2)).has_value());
	CHECK(decode_splice(req(msg("splice", R"("idle_timeout_ms":86400000)"), 2)).has_value());
	for (const char *bad : {"0", "86400001", "-1", "5.0", "1e3", "\"100\"", "null", "true", "[1]",
				"99999999999999999999999"}) {
		INFO(bad);
		CHECK_BAD(decode_splice(req(msg("splice", "\"idle_timeout_ms\":" + std::string(bad)), 2)),
			  "idle_timeout_ms: must be an integer between 1 and 86400000");
	}

	CHECK_FAILS(decode_splice(req(msg("splice"), 1)), ErrorCode::bad_fds, "splice takes 2 fds, got 1");
	CHECK_FAILS(decode_splice(req(msg("splice"), 0)), ErrorCode::bad_fds, "splice takes 2 fds, got 0");
	CHECK_FAILS(decode_splice(req(msg("splice"), 3)), ErrorCode::bad_fds, "splice takes 2 fds, got 3");
	CHECK_BAD(decode_splice(req(msg("splice", R"("idle_timeout":5)"), 2)), "idle_timeout: unknown field");
	/* fds are checked first, then unknown fields (first in key order), then each field. */
	CHECK_FAILS(decode_splice(req(msg("splice", R"("zz":1,"idle_timeout_ms":0)"), 1)), ErrorCode::bad_fds,
		    "splice takes 2 fds, got 1");
	CHECK_BAD(decode_splice(req(msg("splice", R"("zz":1,"aa":2,"idle_timeout_ms":0)"), 2)), "aa: unknown field");

	request_round_trip(Splice{}, decode_splice);
	request_round_trip(Splice{json{{"k", {1, 2.5, "x", nullptr, false}}}, 5000}, decode_splice);
}

TEST_CASE("splice accepts a hand-built body with signed integers")
{
	Request r;
	r.op = "splice";
	r.id = "h";
	r.nfds = 2;
	r.body = json{{"v", 1}, {"op", "splice"}, {"id", "h"}, {"idle_timeout_ms", int(250)}};
	auto s = decode_splice(r);
	REQUIRE(s.has_value());
	CHECK(s->idle_timeout_ms == std::optional<std::uint64_t>(250));
	r.body["idle_timeout_ms"] = int(-5);
	CHECK_BAD(decode_splice(r), "idle_timeout_ms: must be an integer between 1 and 86400000");
}

TEST_CASE("accepted, cancel, cancelling")
{
	CHECK(decode_accepted(rep(msg("accepted", R"("task":"t-1")"), 0))->task == "t-1");
	CHECK_BAD(decode_accepted(rep(msg("accepted"), 0)), "task: missing");
	reply_round_trip(Accepted{"t-9"}, decode_accepted);
	CHECK(encode(std::string("r1"), Accepted{"t-1"}) == R"({"v":1,"op":"accepted","id":"r1","task":"t-1"})");

	CHECK(decode_cancel(req(msg("cancel", R"("task":"t-17")"), 0))->task == "t-17");
	CHECK(decode_cancel(req(msg("cancel", "\"task\":\"" + std::string(128, 't') + "\""), 0)).has_value());
	CHECK_BAD(decode_cancel(req(msg("cancel"), 0)), "task: missing");
	CHECK_BAD(decode_cancel(req(msg("cancel", R"("task":"")"), 0)), "task: must be a string of 1 to 128 bytes");
	CHECK_BAD(decode_cancel(req(msg("cancel", R"("task":17)"), 0)), "task: must be a string of 1 to 128 bytes");
	CHECK_BAD(decode_cancel(req(msg("cancel", "\"task\":\"" + std::string(129, 't') + "\""), 0)),
		  "task: must be a string of 1 to 128 bytes");
	CHECK_FAILS(decode_cancel(req(msg("cancel", R"("task":"t")"), 1)), ErrorCode::bad_fds, "cancel takes 0 fds, got 1");
	request_round_trip(Cancel{"t-1"}, decode_cancel);

	CHECK(decode_cancelling(rep(msg("cancelling", R"("task":"t")"), 0)).has_value());
	CHECK_BAD(decode_cancelling(rep(msg("cancelling", R"("task":[])"), 0)), "task: must be a string of 1 to 128 bytes");
	reply_round_trip(Cancelling{"t-1"}, decode_cancelling);
}

TEST_CASE("done: 2 fds, reason, error only with reason error, counters")
{
	const std::string counters = R"("bytes_a_to_b":10,"bytes_b_to_a":18446744073709551615,"duration_ms":5)";
	auto d = decode_done(rep(msg("done", R"("task":"t","metadata":{"a":1},"reason":"eof",)" + counters), 2));
	REQUIRE(d.has_value());
	CHECK(d->reason == EndReason::eof);
	CHECK_FALSE(d->error.has_value());
	CHECK(d->bytes_b_to_a == 18446744073709551615ull);
	CHECK(d->metadata == json{{"a", 1}});

	auto e = decode_done(rep(msg("done", R"("task":"t","reason":"error","error":"ECONNRESET",)" + counters), 2));
	REQUIRE(e.has_value());
	CHECK(e->error == std::optional<std::string>("ECONNRESET"));
	CHECK(e->metadata.is_null());

	for (const char *reason : {"eof", "idle_timeout", "cancelled", "shutdown"})
		CHECK(decode_done(rep(msg("done", "\"task\":\"t\",\"reason\":\"" + std::string(reason) + "\"," + counters), 2))
			      .has_value());
	const std::string reasons = "reason: must be one of eof, error, idle_timeout, cancelled, shutdown";
	for (const char *reason : {"\"timeout\"", "\"released\"", "\"EOF\"", "1", "null"})
		CHECK_BAD(decode_done(rep(msg("done", "\"task\":\"t\",\"reason\":" + std::string(reason) + "," + counters), 2)),
			  reasons);
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t",)" + counters), 2)), "reason: missing");
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t","reason":"error",)" + counters), 2)),
		  "error: missing (required when reason is error)");
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t","reason":"eof","error":"EIO",)" + counters), 2)),
		  "error: only allowed when reason is error");
	for (const char *bad : {"\"\"", "\"E\"", "\"econnreset\"", "\"Connection reset\"", "5", "\"X1\""})
		CHECK_BAD(decode_done(rep(msg("done", "\"task\":\"t\",\"reason\":\"error\",\"error\":" + std::string(bad) + "," + counters), 2)),
			  "error: must be an errno name such as \"ECONNRESET\"");
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t","reason":"eof","bytes_a_to_b":-1,"bytes_b_to_a":0,"duration_ms":0)"), 2)),
		  "bytes_a_to_b: must be an integer between 0 and 18446744073709551615");
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t","reason":"eof","bytes_a_to_b":1,"duration_ms":0)"), 2)),
		  "bytes_b_to_a: missing");
	CHECK_FAILS(decode_done(rep(msg("done", R"("task":"t","reason":"eof",)" + counters), 0)), ErrorCode::bad_fds,
		    "done takes 2 fds, got 0");

	Done full{"t-1", json{{"conn", 1}}, EndReason::error, std::string("EPIPE"), 1, 2, 3, 0, 0};
	/* Unsent bytes come in pipes: one more fd per count. */
	Done unsent{"t-3", nullptr, EndReason::cancelled, std::nullopt, 4, 0, 1, 5, 0};
	std::string wire = encode(std::string("u"), unsent);
	auto three = decode_done(rep(wire, 3));
	REQUIRE(three.has_value());
	CHECK(*three == unsent);
	CHECK_FAILS(decode_done(rep(wire, 2)), ErrorCode::bad_fds, "done takes 3 fds, got 2");
	Done both{"t-4", nullptr, EndReason::shutdown, std::nullopt, 4, 9, 1, 5, 7};
	CHECK(decode_done(rep(encode(std::string("u"), both), 4)).value() == both);
	CHECK_BAD(decode_done(rep(msg("done", R"("task":"t","reason":"eof","bytes_a_to_b":1,"bytes_b_to_a":1,"duration_ms":1,"unsent_a_to_b":0)"), 2)),
		  "unsent_a_to_b: must be an integer between 1 and 18446744073709551615");
	reply_round_trip(full, decode_done);
	reply_round_trip(Done{"t-2", nullptr, EndReason::cancelled, std::nullopt, 0, 0, 0, 0, 0}, decode_done);
	CHECK(encode(std::string("r1"), Done{"t", nullptr, EndReason::eof, std::nullopt, 1, 2, 3, 0, 0}) ==
	      R"({"v":1,"op":"done","id":"r1","bytes_a_to_b":1,"bytes_b_to_a":2,"duration_ms":3,"metadata":null,"reason":"eof","task":"t"})");
}

/* ---- bumblebee ---- */

TEST_CASE("upgrade: 1 fd, metadata, protocol, timeout_ms, confirm")
{
	auto u = decode_upgrade(req(msg("upgrade"), 1));
	REQUIRE(u.has_value());
	CHECK(u->protocol == FlowProtocol::tcp);
	CHECK_FALSE(u->timeout_ms.has_value());
	CHECK_FALSE(u->confirm);

	auto f = decode_upgrade(req(msg("upgrade", R"("metadata":[1],"protocol":"udp","timeout_ms":600000,"confirm":true)"), 1));
	REQUIRE(f.has_value());
	CHECK(f->protocol == FlowProtocol::udp);
	CHECK(f->timeout_ms == std::optional<std::uint64_t>(600000));
	CHECK(f->confirm);
	CHECK(f->metadata == json::array({1}));

	CHECK_BAD(decode_upgrade(req(msg("upgrade", R"("protocol":"sctp")"), 1)), "protocol: must be \"tcp\" or \"udp\"");
	CHECK_BAD(decode_upgrade(req(msg("upgrade", R"("protocol":"TCP")"), 1)), "protocol: must be \"tcp\" or \"udp\"");
	CHECK_BAD(decode_upgrade(req(msg("upgrade", R"("protocol":6)"), 1)), "protocol: must be \"tcp\" or \"udp\"");
	for (const char *bad : {"0", "600001", "-5", "1.5", "\"10\""})
		CHECK_BAD(decode_upgrade(req(msg("upgrade", "\"timeout_ms\":" + std::string(bad)), 1)),
			  "timeout_ms: must be an integer between 1 and 600000");
	for (const char *bad : {"1", "\"yes\"", "null"})
		CHECK_BAD(decode_upgrade(req(msg("upgrade", "\"confirm\":" + std::string(bad)), 1)),
			  "confirm: must be true or false");
	CHECK_BAD(decode_upgrade(req(msg("upgrade", "\"metadata\":\"" + std::string(20000, 'm') + "\""), 1)),
		  "metadata: larger than 16384 bytes");
	CHECK_BAD(decode_upgrade(req(msg("upgrade", R"("timeout":5)"), 1)), "timeout: unknown field");
	CHECK_FAILS(decode_upgrade(req(msg("upgrade"), 0)), ErrorCode::bad_fds, "upgrade takes 1 fd, got 0");
	CHECK_FAILS(decode_upgrade(req(msg("upgrade"), 2)), ErrorCode::bad_fds, "upgrade takes 1 fd, got 2");

	request_round_trip(Upgrade{}, decode_upgrade);
	request_round_trip(Upgrade{json{{"m", 1}}, FlowProtocol::udp, 1000, true}, decode_upgrade);
}

TEST_CASE("upgraded and syn: task and a flow of two same-family endpoints")
{
	auto u = decode_upgraded(rep(msg("upgraded", std::string(R"("task":"b-1",)") + kFlow), 1));
	REQUIRE(u.has_value());
	CHECK(u->flow == Flow{FlowProtocol::tcp, "192.0.2.7:40000", "203.0.113.5:443"});
	auto v6 = decode_syn(rep(msg("syn", R"("task":"b-1","flow":{"protocol":"udp","src":"[2001:db8::1]:5353","dst":"[2001:db8::7]:53"})"), 0));
	REQUIRE(v6.has_value());
	CHECK(v6->flow.protocol == FlowProtocol::udp);

	auto upgraded = [](const std::string &flow) { return decode_upgraded(rep(msg("upgraded", R"("task":"b",)" + flow), 1)); };
	CHECK_BAD(decode_upgraded(rep(msg("upgraded", R"("task":"b")"), 1)), "flow: missing");
	CHECK_BAD(upgraded(R"("flow":"192.0.2.7:1")"), "flow: must be an object {protocol, src, dst}");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"tcp","src":"192.0.2.7:1","dst":"192.0.2.8:2","x":1})"),
		  "flow.x: unknown field");
	CHECK_BAD(upgraded(R"("flow":{"src":"192.0.2.7:1","dst":"192.0.2.8:2"})"), "flow.protocol: missing");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"icmp","src":"192.0.2.7:1","dst":"192.0.2.8:2"})"),
		  "flow.protocol: must be \"tcp\" or \"udp\"");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"tcp","dst":"192.0.2.8:2"})"), "flow.src: missing");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"tcp","src":"192.0.2.7","dst":"192.0.2.8:2"})"),
		  "flow.src: must be \"ip:port\" or \"[ipv6]:port\"");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"tcp","src":"192.0.2.7:1","dst":"2001:db8::1:2"})"),
		  "flow.dst: must be \"ip:port\" or \"[ipv6]:port\"");
	CHECK_BAD(upgraded(R"("flow":{"protocol":"tcp","src":"192.0.2.7:1","dst":"[2001:db8::1]:2"})"),
		  "flow.dst: must be the same address family as flow.src");
	CHECK_FAILS(decode_upgraded(rep(msg("upgraded", std::string(R"("task":"b",)") + kFlow), 0)), ErrorCode::bad_fds,
		    "upgraded takes 1 fd, got 0");
	CHECK_FAILS(decode_syn(rep(msg("syn", std::string(R"("task":"b",)") + kFlow), 1)), ErrorCode::bad_fds,
		    "syn takes 0 fds, got 1");

	reply_round_trip(Upgraded{"b-1", Flow{FlowProtocol::tcp, "192.0.2.7:40000", "203.0.113.5:443"}}, decode_upgraded);
	reply_round_trip(Syn{"b-2", Flow{FlowProtocol::udp, "[2001:db8::1]:5353", "[2001:db8::7]:53"}}, decode_syn);
}

TEST_CASE("confirm and confirmed")
{
	auto c = decode_confirm(req(msg("confirm", R"("task":"b-3","accept":true)"), 0));
	REQUIRE(c.has_value());
	CHECK(c->accept);
	CHECK_BAD(decode_confirm(req(msg("confirm", R"("task":"b-3")"), 0)), "accept: missing");
	CHECK_BAD(decode_confirm(req(msg("confirm", R"("accept":true)"), 0)), "task: missing");
	CHECK_BAD(decode_confirm(req(msg("confirm", R"("task":"b-3","accept":1)"), 0)), "accept: must be true or false");
	CHECK_BAD(decode_confirm(req(msg("confirm", R"("task":"b-3","accept":"true")"), 0)), "accept: must be true or false");
	request_round_trip(Confirm{"b-3", false}, decode_confirm);
	request_round_trip(Confirm{"b-3", true}, decode_confirm);
	reply_round_trip(Confirmed{"b-3"}, decode_confirmed);
	CHECK_BAD(decode_confirmed(rep(msg("confirmed"), 0)), "task: missing");
}

TEST_CASE("ended: reasons of bumblebee, counters")
{
	const std::string counters = R"("bytes_in":1,"bytes_out":2,"packets_in":3,"packets_out":4,"duration_ms":5)";
	for (const char *reason : {"eof", "timeout", "rejected", "shutdown"})
		CHECK(decode_ended(rep(msg("ended", "\"task\":\"b\",\"reason\":\"" + std::string(reason) + "\"," + counters), 0))
			      .has_value());
	CHECK_BAD(decode_ended(rep(msg("ended", R"("task":"b","reason":"idle_timeout",)" + counters), 0)),
		  "reason: must be one of eof, error, timeout, rejected, shutdown");
	CHECK_BAD(decode_ended(rep(msg("ended", R"("task":"b","reason":"error",)" + counters), 0)),
		  "error: missing (required when reason is error)");
	CHECK_BAD(decode_ended(rep(msg("ended", R"("task":"b","reason":"eof","bytes_in":1,"bytes_out":2,"packets_in":3,"duration_ms":5)"), 0)),
		  "packets_out: missing");
	CHECK_BAD(decode_ended(rep(msg("ended", R"("task":"b","reason":"eof","bytes_in":1,"bytes_out":2,"packets_in":3,"packets_out":4,"duration_ms":5,"packets":1)"), 0)),
		  "packets: unknown field");
	reply_round_trip(Ended{"b-1", json{{"m", true}}, EndReason::rejected, std::nullopt, 1, 2, 3, 4, 5}, decode_ended);
	reply_round_trip(Ended{"b-1", nullptr, EndReason::error, std::string("ETIMEDOUT"), 0, 0, 0, 0, 0}, decode_ended);
}

/* ---- fish ---- */

TEST_CASE("lease: 1 fd, optional ip and ports")
{
	auto l = decode_lease(req(msg("lease"), 1));
	REQUIRE(l.has_value());
	CHECK_FALSE(l->ip.has_value());
	CHECK_FALSE(l->ports.has_value());
	auto v4 = decode_lease(req(msg("lease", R"("ip":"198.51.100.10","ports":"9000-9009","metadata":{"c":7})"), 1));
	REQUIRE(v4.has_value());
	CHECK(v4->ip == std::optional<std::string>("198.51.100.10"));
	CHECK(v4->ports == std::optional<PortRange>(PortRange{9000, 9009}));
	CHECK(decode_lease(req(msg("lease", R"("ip":"2001:db8::7")"), 1)).has_value());
	CHECK(decode_lease(req(msg("lease", R"("ports":"1-65535")"), 1)).has_value());

	for (const char *bad : {"\"198.51.100.300\"", "\"198.51.100.1:80\"", "\"[2001:db8::7]\"", "\"example.com\"",
				"\"\"", "7", "null"})
		CHECK_BAD(decode_lease(req(msg("lease", "\"ip\":" + std::string(bad)), 1)), "ip: must be an IPv4 or IPv6 address");
	for (const char *bad : {"\"0-10\"", "\"10-9\"", "\"9000\"", "\"9000-65536\"", "\"09-10\"", "\" 1-2\"", "9000", "\"\""})
		CHECK_BAD(decode_lease(req(msg("lease", "\"ports\":" + std::string(bad)), 1)),
			  "ports: must be a port range \"lo-hi\" with 1 <= lo <= hi <= 65535");
	CHECK_BAD(decode_lease(req(msg("lease", R"("port":"1-2")"), 1)), "port: unknown field");
	CHECK_FAILS(decode_lease(req(msg("lease"), 0)), ErrorCode::bad_fds, "lease takes 1 fd, got 0");

	request_round_trip(Lease{}, decode_lease);
	request_round_trip(Lease{json{{"c", 1}}, std::string("2001:db8::7"), PortRange{1, 2}}, decode_lease);
}

TEST_CASE("leased, release, released, lease_ended")
{
	auto l = decode_leased(rep(msg("leased", R"("lease":"l-1","ip":"198.51.100.10","ports":"9000-9009")"), 0));
	REQUIRE(l.has_value());
	CHECK(*l == Leased{"l-1", "198.51.100.10", PortRange{9000, 9009}});
	CHECK_BAD(decode_leased(rep(msg("leased", R"("lease":"l-1","ports":"9000-9009")"), 0)), "ip: missing");
	CHECK_BAD(decode_leased(rep(msg("leased", R"("lease":"l-1","ip":"198.51.100.10")"), 0)), "ports: missing");
	reply_round_trip(Leased{"l-2", "2001:db8::7", PortRange{443, 443}}, decode_leased);

	CHECK(decode_release(req(msg("release", R"("lease":"l-1")"), 0))->lease == "l-1");
	CHECK_BAD(decode_release(req(msg("release"), 0)), "lease: missing");
	CHECK_BAD(decode_release(req(msg("release", R"("lease":"l","task":"t")"), 0)), "task: unknown field");
	CHECK_FAILS(decode_release(req(msg("release", R"("lease":"l")"), 1)), ErrorCode::bad_fds, "release takes 0 fds, got 1");
	request_round_trip(Release{"l-1"}, decode_release);
	reply_round_trip(Released{"l-1"}, decode_released);

	const std::string counters = R"("flows":2,"packets_out":9,"packets_in":8)";
	for (const char *reason : {"eof", "released", "shutdown"})
		CHECK(decode_lease_ended(rep(msg("lease_ended", "\"lease\":\"l\",\"reason\":\"" + std::string(reason) + "\"," + counters), 0))
			      .has_value());
	CHECK_BAD(decode_lease_ended(rep(msg("lease_ended", R"("lease":"l","reason":"cancelled",)" + counters), 0)),
		  "reason: must be one of eof, error, released, shutdown");
	CHECK_BAD(decode_lease_ended(rep(msg("lease_ended", R"("lease":"l","reason":"eof","flows":2,"packets_out":9)"), 0)),
		  "packets_in: missing");
	reply_round_trip(LeaseEnded{"l-1", json{{"c", 7}}, EndReason::released, std::nullopt, 2, 9, 8}, decode_lease_ended);
	reply_round_trip(LeaseEnded{"l-1", nullptr, EndReason::error, std::string("ENOBUFS"), 0, 0, 0}, decode_lease_ended);
}

TEST_CASE("the session of PROTOCOL.md section 15 is what the library does")
{
	CHECK(encode(std::string("1"), Welcome{"shoal-proxy@edge1", 1}) ==
	      R"({"v":1,"op":"welcome","id":"1","mailbox":1,"owner":"shoal-proxy@edge1"})");
	CHECK_BAD(decode_splice(req(R"({"v":1,"op":"splice","id":"3","idle_timeout":5})", 2)),
		  "idle_timeout: unknown field");
	CHECK(encode(std::string("2"), Done{"s-1f", json{{"conn", 412}}, EndReason::eof, std::nullopt, 5120, 88211, 9014, 0, 0}) ==
	      R"({"v":1,"op":"done","id":"2","bytes_a_to_b":5120,"bytes_b_to_a":88211,"duration_ms":9014,"metadata":{"conn":412},"reason":"eof","task":"s-1f"})");
	std::string broken = R"({"v":1,"op":"status","id":"4")";
	auto r = parse_request(broken, 0);
	REQUIRE_FALSE(r.has_value());
	CHECK(encode_error(salvage_id(broken), r.error()) ==
	      R"x({"v":1,"op":"error","id":null,"code":"bad_request","message":"message: not valid JSON (syntax error at byte 29)"})x");
}
