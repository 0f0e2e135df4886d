// The wire envelope: strict parsing of {"v","op","id"} messages and encoding of replies and errors.
#include <shoal/proto/envelope.h>

#include <new>
#include <utility>
#include <vector>

#include "detail.h"

namespace shoal::proto {

using nlohmann::json;

namespace detail {

std::string printable(std::string_view s, std::size_t max)
{
	if (s.size() <= max)
		return std::string(s);
	std::size_t cut = max;
	/* Back off continuation bytes so the cut never splits a UTF-8 sequence. */
	while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
		--cut;
	return std::string(s.substr(0, cut)) + "\u2026";
}

namespace {

/* Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629), or npos. */
std::size_t find_bad_utf8(std::string_view s)
{
	const auto *p = reinterpret_cast<const unsigned char *>(s.data());
	const std::size_t n = s.size();
	std::size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		if (c < 0x80) {
			++i;
			continue;
		}
		std::size_t len;
		unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0; /* overlong */
			else if (c == 0xED)
				hi = 0x9F; /* UTF-16 surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90; /* overlong */
			else if (c == 0xF4)
				hi = 0x8F; /* above U+10FFFF */
		} else {
			return i;
		}
		if (n - i < len)
			return i;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return i;
		for (std::size_t k = 2; k < len; ++k)
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
		i += len;
	}
	return std::string_view::npos;
}

/*
 * Builds the DOM like nlohmann's own SAX DOM parser, but refuses nesting deeper than
 * kMaxDepth before it happens (the parser is iterative, but copying, comparing and
 * dumping a json are recursive, so depth must be bounded before anyone else sees the
 * value) and notices duplicate keys, which nlohmann silently collapses (last wins) — a
 * message whose meaning depends on which copy a reader keeps must not be accepted.
 */
class StrictDomBuilder {
public:
	using number_integer_t = json::number_integer_t;
	using number_unsigned_t = json::number_unsigned_t;
	using number_float_t = json::number_float_t;
	using string_t = json::string_t;
	using binary_t = json::binary_t;

	json root;
	std::optional<Failure> failure;
	bool id_ambiguous = false;

	bool null() { return value(nullptr); }
	bool boolean(bool v) { return value(v); }
	bool number_integer(number_integer_t v) { return value(v); }
	bool number_unsigned(number_unsigned_t v) { return value(v); }
	bool number_float(number_float_t v, const string_t &) { return value(v); }
	bool string(string_t &v) { return value(std::move(v)); }
	bool binary(binary_t &v) { return value(json::binary(std::move(v))); }

	bool start_object(std::size_t) { return open(json::value_t::object); }
	bool start_array(std::size_t) { return open(json::value_t::array); }
	bool end_object() { return close(); }
	bool end_array() { return close(); }

	bool key(string_t &k)
	{
		auto &obj = stack_.back()->get_ref<json::object_t &>();
		auto [it, inserted] = obj.emplace(k, nullptr);
		if (stack_.size() == 1)
			top_key_ = k;
		if (!inserted) {
			if (stack_.size() == 1 && k == "id")
				id_ambiguous = true;
			if (!failure)
				failure = Failure{ErrorCode::bad_request, duplicate_message(k)};
		}
		slot_ = &it->second;
		return true;
	}

	bool parse_error(std::size_t position, const std::string &,
			 const nlohmann::detail::exception &ex)
	{
		/* 406 is nlohmann's "number overflow" (a float beyond double's range). */
		const char *what = ex.id == 406 ? "number out of range" : "syntax error";
		/* nlohmann counts from 1 (the end of input is size + 1); messages count from 0 like the UTF-8 check. */
		std::size_t at = position > 0 ? position - 1 : 0;
		failure = Failure{ErrorCode::bad_request, "message: not valid JSON (" + std::string(what) +
								  " at byte " + std::to_string(at) + ")"};
		return false;
	}

private:
	std::vector<json *> stack_;
	json *slot_ = nullptr;
	std::string top_key_;

	/* Names the top-level field the duplicate sits in, so the client knows where to look. */
	std::string duplicate_message(const std::string &k) const
	{
		if (stack_.size() == 1)
			return printable(k) + ": duplicate key";
		if (root.is_object())
			return printable(top_key_) + ": duplicate key \"" + printable(k) + "\" inside";
		return "message: duplicate key \"" + printable(k) + "\"";
	}

	template <typename V>
	json *place(V &&v)
	{
		if (stack_.empty()) {
			root = json(std::forward<V>(v));
			return &root;
		}
		json *parent = stack_.back();
		if (parent->is_array()) {
			auto &arr = parent->get_ref<json::array_t &>();
			arr.emplace_back(std::forward<V>(v));
			return &arr.back();
		}
		*slot_ = json(std::forward<V>(v));
		return slot_;
	}

	template <typename V>
	bool value(V &&v)
	{
		place(std::forward<V>(v));
		return true;
	}

	bool open(json::value_t type)
	{
		if (stack_.size() + 1 > kMaxDepth) {
			failure = Failure{ErrorCode::bad_request, "message: nested deeper than " +
									  std::to_string(kMaxDepth) + " levels"};
			return false;
		}
		stack_.push_back(place(type));
		return true;
	}

	bool close()
	{
		stack_.pop_back();
		return true;
	}
};

} // namespace

Document parse_document(std::string_view bytes)
{
	Document doc;
	if (bytes.size() > kMaxMessageSize) {
		doc.failure = Failure{ErrorCode::bad_request,
				      "message larger than " + std::to_string(kMaxMessageSize) + " bytes"};
		return doc;
	}
	if (bytes.empty()) {
		doc.failure = Failure{ErrorCode::bad_request, "message: empty"};
		return doc;
	}
	if (auto at = find_bad_utf8(bytes); at != std::string_view::npos) {
		doc.failure = Failure{ErrorCode::bad_request,
				      "message: not valid UTF-8 (at byte " + std::to_string(at) + ")"};
		return doc;
	}
	try {
		StrictDomBuilder builder;
		bool ok = json::sax_parse(bytes.begin(), bytes.end(), &builder,
					  json::input_format_t::json, /*strict*/ true,
					  /*ignore_comments*/ false);
		if (builder.failure) {
			doc.failure = std::move(builder.failure);
		} else if (!ok) {
			doc.failure = Failure{ErrorCode::bad_request, "message: not valid JSON"};
		}
		doc.complete = ok;
		doc.id_ambiguous = builder.id_ambiguous;
		doc.value = std::move(builder.root);
	} catch (const std::bad_alloc &) {
		doc.failure = Failure{ErrorCode::internal, "out of memory parsing the message"};
	} catch (const std::exception &e) {
		/* Not expected from the SAX parser; kept so no exception can escape. */
		doc.failure = Failure{ErrorCode::internal, "parsing the message: " + printable(e.what(), 200)};
	}
	return doc;
}

} // namespace detail

namespace {

using detail::bad_request;
using detail::fail;

struct Envelope {
	int v = kVersion;
	std::string op;
	std::optional<std::string> id;
	json body;
};

/*
 * The checks parse_request and parse_reply share. id_required: a request must carry a
 * string id; a reply may carry null (errors about messages whose id was unreadable).
 */
Expected<Envelope, Failure> parse_envelope(std::string_view bytes, std::size_t nfds, bool id_required)
{
	if (bytes.size() > kMaxMessageSize)
		return bad_request("message larger than " + std::to_string(kMaxMessageSize) + " bytes");
	if (nfds > kMaxFds)
		return fail(ErrorCode::bad_fds, "message carries more than " + std::to_string(kMaxFds) +
							 " fds (" + std::to_string(nfds) + ")");
	detail::Document doc = detail::parse_document(bytes);
	if (doc.failure)
		return Unexpected(std::move(*doc.failure));
	json &body = doc.value;
	if (!body.is_object())
		return bad_request("message: not a JSON object");

	Envelope env;
	auto v = body.find("v");
	if (v == body.end())
		return bad_request("v: missing");
	if (!v->is_number_integer())
		return bad_request("v: must be an integer");
	if (v->is_number_unsigned() ? v->get<json::number_unsigned_t>() != kVersion
				    : v->get<json::number_integer_t>() != kVersion) {
		std::string shown = v->dump();
		return fail(ErrorCode::unsupported_version,
			    "v: version " + shown + " is not supported (this daemon speaks " +
				    std::to_string(kVersion) + ")");
	}
	env.v = kVersion;

	auto op = body.find("op");
	if (op == body.end())
		return bad_request("op: missing");
	if (!op->is_string())
		return bad_request("op: must be a string");
	const auto &op_s = op->get_ref<const std::string &>();
	if (op_s.empty())
		return bad_request("op: must not be empty");
	if (op_s.size() > kMaxOpLength)
		return bad_request("op: longer than " + std::to_string(kMaxOpLength) + " bytes");
	env.op = op_s;

	auto id = body.find("id");
	if (id == body.end())
		return bad_request("id: missing");
	if (id->is_null() && !id_required) {
		env.id = std::nullopt;
	} else {
		if (!id->is_string())
			return bad_request("id: must be a string");
		const auto &id_s = id->get_ref<const std::string &>();
		if (id_s.size() > kMaxIdLength)
			return bad_request("id: longer than " + std::to_string(kMaxIdLength) + " bytes");
		env.id = id_s;
	}
	env.body = std::move(body);
	return env;
}

std::string dump(const json &j)
{
	/* replace: a string that is not UTF-8 (only possible from daemon-built values) must not throw. */
	return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

std::string_view to_string(ErrorCode code)
{
	switch (code) {
	case ErrorCode::bad_request: return "bad_request";
	case ErrorCode::bad_fds: return "bad_fds";
	case ErrorCode::unsupported_version: return "unsupported_version";
	case ErrorCode::unknown_op: return "unknown_op";
	case ErrorCode::busy: return "busy";
	case ErrorCode::not_found: return "not_found";
	case ErrorCode::denied: return "denied";
	case ErrorCode::exhausted: return "exhausted";
	case ErrorCode::internal: return "internal";
	}
	return "internal";
}

std::optional<ErrorCode> error_code_from_string(std::string_view name)
{
	static constexpr ErrorCode all[] = {
		ErrorCode::bad_request, ErrorCode::bad_fds, ErrorCode::unsupported_version,
		ErrorCode::unknown_op,	ErrorCode::busy,    ErrorCode::not_found,
		ErrorCode::denied,	ErrorCode::exhausted, ErrorCode::internal,
	};
	for (auto code : all)
		if (to_string(code) == name)
			return code;
	return std::nullopt;
}

Expected<Request, Failure> parse_request(std::string_view bytes, std::size_t nfds)
{
	try {
		auto env = parse_envelope(bytes, nfds, /*id_required*/ true);
		if (!env)
			return Unexpected(std::move(env.error()));
		Request req;
		req.v = env->v;
		req.op = std::move(env->op);
		req.id = std::move(*env->id);
		req.body = std::move(env->body);
		req.nfds = nfds;
		return req;
	} catch (const std::exception &) {
		/* Only std::bad_alloc can get here. */
		return fail(ErrorCode::internal, "out of memory parsing the message");
	}
}

Expected<Reply, Failure> parse_reply(std::string_view bytes, std::size_t nfds)
{
	try {
		auto env = parse_envelope(bytes, nfds, /*id_required*/ false);
		if (!env)
			return Unexpected(std::move(env.error()));
		Reply rep;
		rep.v = env->v;
		rep.op = std::move(env->op);
		rep.id = std::move(env->id);
		rep.body = std::move(env->body);
		rep.nfds = nfds;
		return rep;
	} catch (const std::exception &) {
		return fail(ErrorCode::internal, "out of memory parsing the message");
	}
}

Failure unknown_op_failure(std::string_view op)
{
	return Failure{ErrorCode::unknown_op, "op: unknown operation \"" + detail::printable(op) + "\""};
}

std::optional<std::string> salvage_id(std::string_view bytes)
{
	try {
		detail::Document doc = detail::parse_document(bytes);
		/* A duplicate elsewhere still leaves one readable id; a duplicate id does not. */
		if (!doc.complete || doc.id_ambiguous || !doc.value.is_object())
			return std::nullopt;
		auto id = doc.value.find("id");
		if (id == doc.value.end() || !id->is_string())
			return std::nullopt;
		const auto &s = id->get_ref<const std::string &>();
		if (s.size() > kMaxIdLength)
			return std::nullopt;
		return s;
	} catch (const std::exception &) {
		return std::nullopt;
	}
}

std::string encode_message(const std::optional<std::string> &id, std::string_view op,
			   const json &fields)
{
	std::string out;
	out.reserve(64);
	out += "{\"v\":";
	out += std::to_string(kVersion);
	out += ",\"op\":";
	out += dump(json(std::string(op)));
	out += ",\"id\":";
	out += id ? dump(json(*id)) : std::string("null");
	if (fields.is_object()) {
		for (const auto &[key, value] : fields.items()) {
			if (key == "v" || key == "op" || key == "id")
				continue;
			out += ',';
			out += dump(json(key));
			out += ':';
			out += dump(value);
		}
	}
	out += '}';
	return out;
}

std::string encode_error(const std::optional<std::string> &id, ErrorCode code, std::string_view message)
{
	return encode_message(id, "error",
			      json{{"code", std::string(to_string(code))}, {"message", std::string(message)}});
}

std::string encode_error(const std::optional<std::string> &id, const Failure &failure)
{
	return encode_error(id, failure.code, failure.message);
}

} // namespace shoal::proto
