// Unit tests of the envelope: every refusal of parse_request/parse_reply, salvage_id and the encoders.
#include <catch.hpp>

#include <string>

#include <shoal/proto/envelope.h>

using namespace shoal::proto;
using nlohmann::json;

namespace {

/* The failure of parsing text as a request; fails the test if it parsed. */
Failure refusal(std::string_view text, std::size_t nfds = 0)
{
	auto r = parse_request(text, nfds);
	REQUIRE_FALSE(r.has_value());
	return r.error();
}

#define CHECK_REFUSED(text, nfds, want_code, want_message)  \
	do {                                                \
		Failure f_ = refusal((text), (nfds));       \
		CHECK(to_string(f_.code) == to_string(want_code)); \
		CHECK(f_.message == (want_message));        \
	} while (0)

std::string nested(std::size_t depth)
{
	return std::string(depth, '[') + std::string(depth, ']');
}

} // namespace

TEST_CASE("error codes have their wire names and parse back")
{
	const std::pair<ErrorCode, const char *> all[] = {
		{ErrorCode::bad_request, "bad_request"},
		{ErrorCode::bad_fds, "bad_fds"},
		{ErrorCode::unsupported_version, "unsupported_version"},
		{ErrorCode::unknown_op, "unknown_op"},
		{ErrorCode::busy, "busy"},
		{ErrorCode::not_found, "not_found"},
		{ErrorCode::denied, "denied"},
		{ErrorCode::exhausted, "exhausted"},
		{ErrorCode::internal, "internal"},
	};
	for (auto [code, name] : all) {
		CHECK(to_string(code) == name);
		REQUIRE(error_code_from_string(name).has_value());
		CHECK(*error_code_from_string(name) == code);
	}
	CHECK_FALSE(error_code_from_string("Busy").has_value());
	CHECK_FALSE(error_code_from_string("").has_value());
}

TEST_CASE("a valid request parses into its envelope and body")
{
	auto r = parse_request(R"({"v":1,"op":"splice","id":"abc","metadata":{"x":1}})", 2);
	REQUIRE(r.has_value());
	CHECK(r->v == 1);
	CHECK(r->op == "splice");
	CHECK(r->id == "abc");
	CHECK(r->nfds == 2);
	CHECK(r->body["metadata"]["x"] == 1);
	/* Whitespace anywhere JSON allows it is fine. */
	CHECK(parse_request(" \n{ \"v\" : 1 , \"op\" : \"status\" , \"id\" : \"\" }\t", 0).has_value());
}

TEST_CASE("message size: at most 65536 bytes")
{
	std::string head = R"({"v":1,"op":"status","id":"r","pad":")";
	std::string exact = head + std::string(kMaxMessageSize - head.size() - 2, 'x') + "\"}";
	REQUIRE(exact.size() == kMaxMessageSize);
	CHECK(parse_request(exact, 0).has_value());
	std::string over = head + std::string(kMaxMessageSize - head.size() - 1, 'x') + "\"}";
	CHECK_REFUSED(over, 0, ErrorCode::bad_request, "message larger than 65536 bytes");
	/* Size is checked before anything else, so nothing of a huge message is parsed. */
	CHECK_REFUSED(std::string(100000, '['), 0, ErrorCode::bad_request, "message larger than 65536 bytes");
}

TEST_CASE("fds: at most 4 per message")
{
	CHECK(parse_request(R"({"v":1,"op":"x","id":"r"})", 4).has_value());
	CHECK_REFUSED(R"({"v":1,"op":"x","id":"r"})", 5, ErrorCode::bad_fds,
		      "message carries more than 4 fds (5)");
	/* Before JSON: a transport-level problem, reported even for garbage. */
	CHECK(refusal("garbage", 9).code == ErrorCode::bad_fds);
}

TEST_CASE("not JSON: empty, syntax, trailing data, comments, huge numbers")
{
	CHECK_REFUSED("", 0, ErrorCode::bad_request, "message: empty");
	CHECK_REFUSED("   ", 0, ErrorCode::bad_request, "message: not valid JSON (syntax error at byte 3)");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":"r)", 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 28)");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":"r"} x)", 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 31)");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":"r"}{})", 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 30)");
	CHECK_REFUSED(R"({"v":1,/*c*/"op":"status","id":"r"})", 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 7)");
	CHECK_REFUSED(R"({"v":1e400,"op":"status","id":"r"})", 0, ErrorCode::bad_request,
		      "message: not valid JSON (number out of range at byte 9)");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":"\x41"})", 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 28)");
	CHECK_REFUSED(std::string("{\"v\":1,\"op\":\"status\",\"id\":\"a\x01\"}"), 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 28)");
	CHECK_REFUSED(std::string("{\"v\":1,\"op\":\"status\",\"id\":\"a\0\"}", 31), 0, ErrorCode::bad_request,
		      "message: not valid JSON (syntax error at byte 28)");
	/* A lone surrogate escape would decode to invalid UTF-8. */
	CHECK(refusal(R"({"v":1,"op":"status","id":"\ud800"})").message.rfind("message: not valid JSON", 0) == 0);
}

TEST_CASE("not UTF-8: every kind of ill-formed sequence names its byte")
{
	const std::pair<std::string, std::size_t> cases[] = {
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\x80\"}", 22},             /* lone continuation */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\xc0\xaf\"}", 22},         /* overlong 2-byte */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\xe0\x80\xaf\"}", 22},     /* overlong 3-byte */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\xed\xa0\x80\"}", 22},     /* UTF-16 surrogate */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\xf4\x90\x80\x80\"}", 22}, /* above U+10FFFF */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"\xe2\x82\"}", 22},         /* truncated */
		{"{\"v\":1,\"op\":\"s\",\"id\":\"r\",\"\xff\":1}", 26},     /* in a key */
		{"\xef\xbb", 0},
	};
	for (const auto &[text, at] : cases) {
		INFO(text);
		CHECK_REFUSED(text, 0, ErrorCode::bad_request,
			      "message: not valid UTF-8 (at byte " + std::to_string(at) + ")");
	}
	/* Well-formed multi-byte text of every length is fine. */
	CHECK(parse_request("{\"v\":1,\"op\":\"s\",\"id\":\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"}", 0).has_value());
}

TEST_CASE("nesting: at most 64 levels, refused before it can hurt")
{
	/* The message object is level 1, so a value at its top can nest 63 more. */
	std::string ok = R"({"v":1,"op":"x","id":"r","m":)" + nested(63) + "}";
	CHECK(parse_request(ok, 0).has_value());
	std::string deep = R"({"v":1,"op":"x","id":"r","m":)" + nested(64) + "}";
	CHECK_REFUSED(deep, 0, ErrorCode::bad_request, "message: nested deeper than 64 levels");
	/* 60000 '[' fit in a datagram; they must not overflow the stack of anything. */
	CHECK_REFUSED(std::string(60000, '['), 0, ErrorCode::bad_request, "message: nested deeper than 64 levels");
	std::string objects;
	for (int i = 0; i < 10000; ++i)
		objects += "{\"a\":";
	CHECK_REFUSED(objects, 0, ErrorCode::bad_request, "message: nested deeper than 64 levels");
	CHECK_FALSE(salvage_id(std::string(60000, '[')).has_value());
}

TEST_CASE("not an object")
{
	for (const char *text : {"[1,2]", "\"s\"", "null", "1", "true"}) {
		INFO(text);
		CHECK_REFUSED(text, 0, ErrorCode::bad_request, "message: not a JSON object");
	}
}

TEST_CASE("duplicate keys are refused, naming the field")
{
	CHECK_REFUSED(R"({"v":1,"op":"status","id":"a","op":"list"})", 0, ErrorCode::bad_request,
		      "op: duplicate key");
	CHECK_REFUSED(R"({"v":1,"op":"x","id":"a","metadata":{"k":1,"k":2}})", 0, ErrorCode::bad_request,
		      "metadata: duplicate key \"k\" inside");
	CHECK_REFUSED(R"([{"k":1,"k":2}])", 0, ErrorCode::bad_request, "message: duplicate key \"k\"");
}

TEST_CASE("v: an integer, and 1")
{
	CHECK_REFUSED(R"({"op":"status","id":"r"})", 0, ErrorCode::bad_request, "v: missing");
	CHECK_REFUSED(R"({"v":"1","op":"status","id":"r"})", 0, ErrorCode::bad_request, "v: must be an integer");
	CHECK_REFUSED(R"({"v":1.0,"op":"status","id":"r"})", 0, ErrorCode::bad_request, "v: must be an integer");
	CHECK_REFUSED(R"({"v":null,"op":"status","id":"r"})", 0, ErrorCode::bad_request, "v: must be an integer");
	CHECK_REFUSED(R"({"v":2,"op":"status","id":"r"})", 0, ErrorCode::unsupported_version,
		      "v: version 2 is not supported (this daemon speaks 1)");
	CHECK_REFUSED(R"({"v":-1,"op":"status","id":"r"})", 0, ErrorCode::unsupported_version,
		      "v: version -1 is not supported (this daemon speaks 1)");
	CHECK_REFUSED(R"({"v":18446744073709551615,"op":"status","id":"r"})", 0, ErrorCode::unsupported_version,
		      "v: version 18446744073709551615 is not supported (this daemon speaks 1)");
	/* Beyond 64 bits the parser makes it a float: not an integer. */
	CHECK_REFUSED(R"({"v":18446744073709551616,"op":"status","id":"r"})", 0, ErrorCode::bad_request,
		      "v: must be an integer");
	/* The version is checked first: a v2 message may have any other shape. */
	CHECK(refusal(R"({"v":2})").code == ErrorCode::unsupported_version);
}

TEST_CASE("op: a non-empty string of at most 64 bytes")
{
	CHECK_REFUSED(R"({"v":1,"id":"r"})", 0, ErrorCode::bad_request, "op: missing");
	CHECK_REFUSED(R"({"v":1,"op":7,"id":"r"})", 0, ErrorCode::bad_request, "op: must be a string");
	CHECK_REFUSED(R"({"v":1,"op":"","id":"r"})", 0, ErrorCode::bad_request, "op: must not be empty");
	std::string op64(64, 'o');
	CHECK(parse_request(R"({"v":1,"op":")" + op64 + R"(","id":"r"})", 0).has_value());
	CHECK_REFUSED(R"({"v":1,"op":")" + op64 + R"(o","id":"r"})", 0, ErrorCode::bad_request,
		      "op: longer than 64 bytes");
}

TEST_CASE("id: a string of at most 128 bytes")
{
	CHECK_REFUSED(R"({"v":1,"op":"status"})", 0, ErrorCode::bad_request, "id: missing");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":null})", 0, ErrorCode::bad_request, "id: must be a string");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":5})", 0, ErrorCode::bad_request, "id: must be a string");
	CHECK_REFUSED(R"({"v":1,"op":"status","id":["a"]})", 0, ErrorCode::bad_request, "id: must be a string");
	std::string id128(128, 'i');
	auto ok = parse_request(R"({"v":1,"op":"status","id":")" + id128 + R"("})", 0);
	REQUIRE(ok.has_value());
	CHECK(ok->id == id128);
	CHECK_REFUSED(R"({"v":1,"op":"status","id":")" + id128 + R"(i"})", 0, ErrorCode::bad_request,
		      "id: longer than 128 bytes");
	CHECK(parse_request(R"({"v":1,"op":"status","id":""})", 0).has_value());
}

TEST_CASE("parse_reply allows a null id and otherwise checks like parse_request")
{
	auto r = parse_reply(R"({"v":1,"op":"error","id":null,"code":"bad_request","message":"m"})", 0);
	REQUIRE(r.has_value());
	CHECK_FALSE(r->id.has_value());
	CHECK(r->op == "error");
	auto s = parse_reply(R"({"v":1,"op":"accepted","id":"x","task":"t"})", 0);
	REQUIRE(s.has_value());
	CHECK(s->id == std::optional<std::string>("x"));
	auto missing = parse_reply(R"({"v":1,"op":"accepted"})", 0);
	REQUIRE_FALSE(missing.has_value());
	CHECK(missing.error().message == "id: missing");
	auto number = parse_reply(R"({"v":1,"op":"accepted","id":1})", 0);
	REQUIRE_FALSE(number.has_value());
	CHECK(number.error().message == "id: must be a string");
	CHECK(parse_reply(R"({"v":3,"op":"accepted","id":null})", 0).error().code == ErrorCode::unsupported_version);
	CHECK(parse_reply("[", 0).error().code == ErrorCode::bad_request);
}

TEST_CASE("unknown_op_failure names the op, cut to a printable length")
{
	Failure f = unknown_op_failure("frobnicate");
	CHECK(f.code == ErrorCode::unknown_op);
	CHECK(f.message == "op: unknown operation \"frobnicate\"");
	Failure long_op = unknown_op_failure(std::string(64, 'x') + "yyyy");
	CHECK(long_op.message == "op: unknown operation \"" + std::string(64, 'x') + "\u2026\"");
	/* The cut never splits a UTF-8 sequence. */
	std::string accents;
	for (int i = 0; i < 40; ++i)
		accents += "\xc3\xa9";
	Failure cut = unknown_op_failure(accents);
	CHECK(cut.message == "op: unknown operation \"" + accents.substr(0, 64) + "\u2026\"");
}

TEST_CASE("salvage_id echoes the id of any parseable object, nothing else")
{
	CHECK(salvage_id(R"({"v":1,"op":"status","id":"abc"})") == std::optional<std::string>("abc"));
	/* Bad envelope but readable id. */
	CHECK(salvage_id(R"({"v":9,"id":"abc"})") == std::optional<std::string>("abc"));
	CHECK(salvage_id(R"({"id":"abc","op":""})") == std::optional<std::string>("abc"));
	/* A duplicate of another key leaves the id readable... */
	CHECK(salvage_id(R"({"id":"abc","op":"a","op":"b"})") == std::optional<std::string>("abc"));
	/* ...a duplicate id does not. */
	CHECK_FALSE(salvage_id(R"({"id":"abc","id":"def"})").has_value());
	CHECK_FALSE(salvage_id(R"({"id":"abc",)").has_value());
	CHECK_FALSE(salvage_id(R"({"id":5})").has_value());
	CHECK_FALSE(salvage_id(R"({"id":null})").has_value());
	CHECK_FALSE(salvage_id(R"({"op":"x"})").has_value());
	CHECK_FALSE(salvage_id(R"(["id"])").has_value());
	CHECK_FALSE(salvage_id("").has_value());
	CHECK_FALSE(salvage_id("{\"id\":\"a\",\"x\":\"\xff\"}").has_value());
	CHECK_FALSE(salvage_id(R"({"id":")" + std::string(129, 'i') + R"("})").has_value());
	CHECK(salvage_id(R"({"id":")" + std::string(128, 'i') + R"("})").has_value());
	std::string big = R"({"id":"abc","pad":")" + std::string(kMaxMessageSize, 'x') + "\"}";
	CHECK_FALSE(salvage_id(big).has_value());
}

TEST_CASE("encode_message: v, op, id first, then the fields")
{
	CHECK(encode_message(std::string("r1"), "accepted", json{{"task", "t-1"}}) ==
	      R"({"v":1,"op":"accepted","id":"r1","task":"t-1"})");
	CHECK(encode_message(std::nullopt, "status") == R"({"v":1,"op":"status","id":null})");
	CHECK(encode_message(std::string("x"), "list", json::object()) == R"({"v":1,"op":"list","id":"x"})");
	/* The envelope's own keys win over fields of the same name. */
	CHECK(encode_message(std::string("x"), "a", json{{"v", 7}, {"op", "b"}, {"id", "y"}, {"k", 1}}) ==
	      R"({"v":1,"op":"a","id":"x","k":1})");
	/* A non-object is treated as no fields. */
	CHECK(encode_message(std::string("x"), "a", json::array({1, 2})) == R"({"v":1,"op":"a","id":"x"})");
	/* Strings are escaped; bytes that are not UTF-8 become U+FFFD, so the output always parses. */
	std::string out = encode_message(std::string("q\"\\"), "a", json{{"s", std::string("ok\xff")}});
	CHECK(out == "{\"v\":1,\"op\":\"a\",\"id\":\"q\\\"\\\\\",\"s\":\"ok\xef\xbf\xbd\"}");
	CHECK(parse_request(out, 0).has_value());
}

TEST_CASE("encode_error writes code and message, id or null")
{
	CHECK(encode_error(std::string("r"), ErrorCode::busy, "tasks: limit of 10 reached") ==
	      R"({"v":1,"op":"error","id":"r","code":"busy","message":"tasks: limit of 10 reached"})");
	CHECK(encode_error(std::nullopt, Failure{ErrorCode::bad_request, "message: empty"}) ==
	      R"({"v":1,"op":"error","id":null,"code":"bad_request","message":"message: empty"})");
}

TEST_CASE("every refusal can be answered: encode_error of salvage_id round-trips")
{
	const std::string inputs[] = {
		"", "{", R"({"v":2,"id":"x"})", R"({"v":1,"op":"","id":"y"})", std::string(60000, '['),
		"{\"id\":\"\xff\"}", R"({"v":1,"op":"a","id":"z","op":"b"})",
	};
	for (const auto &in : inputs) {
		auto r = parse_request(in, 0);
		REQUIRE_FALSE(r.has_value());
		auto id = salvage_id(in);
		auto wire = encode_error(id, r.error());
		auto back = parse_reply(wire, 0);
		REQUIRE(back.has_value());
		CHECK(back->id == id);
		CHECK(back->body["code"] == std::string(to_string(r.error().code)));
		CHECK(back->body["message"] == r.error().message);
	}
}
