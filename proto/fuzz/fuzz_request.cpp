// libFuzzer target: every parser and decoder of proto on arbitrary bytes, plus round-trip invariants.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <shoal/proto/address.h>
#include <shoal/proto/envelope.h>
#include <shoal/proto/messages.h>

using namespace shoal::proto;

namespace {

/* A broken invariant is a bug: abort so libFuzzer (and the replay test) report the input. */
#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			std::abort();                                                      \
		}                                                                          \
	} while (0)

/*
 * Decode req as op with the fds op takes (so the field checks are reached whatever the
 * input's op was); on success, encode, parse again and decode again: the result must be
 * equal, which is what lets a daemon echo what it accepted.
 */
template <typename Decode>
void request_round_trip(const Request &original, std::string_view op, Decode decode)
{
	Request req = original;
	req.op = std::string(op);
	req.nfds = expected_fds(op).value_or(0);
	auto m = decode(req);
	if (!m)
		return;
	std::string wire = encode(req.id, *m);
	if (wire.size() > kMaxMessageSize)
		return;
	auto again = parse_request(wire, req.nfds);
	FUZZ_CHECK(again.has_value());
	FUZZ_CHECK(again->id == req.id);
	auto m2 = decode(*again);
	FUZZ_CHECK(m2.has_value());
	FUZZ_CHECK(*m2 == *m);
}

template <typename Decode>
void reply_round_trip(const Reply &original, std::string_view op, Decode decode)
{
	Reply rep = original;
	rep.op = std::string(op);
	rep.nfds = expected_fds(op).value_or(0);
	auto m = decode(rep);
	if (!m)
		return;
	std::string wire = encode(rep.id, *m);
	if (wire.size() > kMaxMessageSize)
		return;
	auto again = parse_reply(wire, rep.nfds);
	FUZZ_CHECK(again.has_value());
	FUZZ_CHECK(again->id == rep.id);
	auto m2 = decode(*again);
	FUZZ_CHECK(m2.has_value());
	FUZZ_CHECK(*m2 == *m);
}

void fuzz_requests(const Request &req)
{
	/* As received: the real op and fd count (mostly exercises the op and fd checks). */
	(void)decode_hello(req);
	(void)decode_splice(req);
	(void)decode_upgrade(req);
	(void)decode_lease(req);

	request_round_trip(req, ops::hello, decode_hello);
	request_round_trip(req, ops::status, decode_status_request);
	request_round_trip(req, ops::list, decode_list_request);
	request_round_trip(req, ops::upgrade_daemon, decode_upgrade_daemon);
	request_round_trip(req, ops::splice, decode_splice);
	request_round_trip(req, ops::cancel, decode_cancel);
	request_round_trip(req, ops::upgrade, decode_upgrade);
	request_round_trip(req, ops::confirm, decode_confirm);
	request_round_trip(req, ops::lease, decode_lease);
	request_round_trip(req, ops::release, decode_release);
}

void fuzz_replies(const Reply &rep)
{
	(void)decode_done(rep);
	(void)decode_error_reply(rep);

	reply_round_trip(rep, ops::welcome, decode_welcome);
	reply_round_trip(rep, ops::status, decode_status_reply);
	reply_round_trip(rep, ops::list, decode_list_reply);
	reply_round_trip(rep, ops::handed_over, decode_handed_over);
	reply_round_trip(rep, ops::error, decode_error_reply);
	reply_round_trip(rep, ops::accepted, decode_accepted);
	reply_round_trip(rep, ops::done, decode_done);
	reply_round_trip(rep, ops::cancelling, decode_cancelling);
	reply_round_trip(rep, ops::upgraded, decode_upgraded);
	reply_round_trip(rep, ops::syn, decode_syn);
	reply_round_trip(rep, ops::confirmed, decode_confirmed);
	reply_round_trip(rep, ops::ended, decode_ended);
	reply_round_trip(rep, ops::leased, decode_leased);
	reply_round_trip(rep, ops::released, decode_released);
	reply_round_trip(rep, ops::lease_ended, decode_lease_ended);
}

/* Whatever parses must format back to text that parses to the same thing. */
void fuzz_addresses(std::string_view text)
{
	if (auto ep = parse_endpoint(text)) {
		std::string s = format_endpoint(*ep);
		FUZZ_CHECK(!s.empty());
		auto again = parse_endpoint(s);
		FUZZ_CHECK(again.has_value());
		FUZZ_CHECK(same_endpoint(*ep, *again));
		FUZZ_CHECK(format_endpoint(*again) == s);
	}
	if (auto ip = parse_ip(text)) {
		std::string s = format_ip(*ip);
		FUZZ_CHECK(!s.empty());
		auto again = parse_ip(s);
		FUZZ_CHECK(again.has_value());
		FUZZ_CHECK(same_endpoint(*ip, *again));
	}
	if (auto range = parse_port_range(text)) {
		FUZZ_CHECK(range->lo >= 1 && range->lo <= range->hi);
		FUZZ_CHECK(format_port_range(*range) == text);
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size == 0)
		return 0;
	const std::size_t nfds = data[0] % 8;
	const std::string_view bytes(reinterpret_cast<const char *>(data + 1), size - 1);

	auto id = salvage_id(bytes);
	if (id)
		FUZZ_CHECK(id->size() <= kMaxIdLength);

	auto req = parse_request(bytes, nfds);
	if (req) {
		/* A request that parses has exactly the id salvage_id would have echoed. */
		FUZZ_CHECK(id.has_value() && *id == req->id);
		FUZZ_CHECK(req->v == kVersion && !req->op.empty() && req->body.is_object());
		fuzz_requests(*req);
	} else {
		/* Every refusal can be sent: it encodes to an error reply a client can decode. */
		std::string wire = encode_error(id, req.error());
		FUZZ_CHECK(wire.size() <= kMaxMessageSize);
		auto rep = parse_reply(wire, 0);
		FUZZ_CHECK(rep.has_value());
		FUZZ_CHECK(rep->id == id);
		auto err = decode_error_reply(*rep);
		FUZZ_CHECK(err.has_value());
		FUZZ_CHECK(err->code == req.error().code && err->message == req.error().message);
	}

	if (auto rep = parse_reply(bytes, nfds))
		fuzz_replies(*rep);

	fuzz_addresses(bytes);
	return 0;
}
