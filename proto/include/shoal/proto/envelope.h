// The shoal wire envelope: {"v":1,"op":…,"id":…}, error codes, and strict decoding of requests.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>

namespace shoal::proto {

inline constexpr int kVersion = 1;
inline constexpr std::size_t kMaxIdLength = 128;
/* One datagram: the JSON text of a message, in bytes. */
inline constexpr std::size_t kMaxMessageSize = 65536;
/* SCM_RIGHTS fds one message may carry. */
inline constexpr std::size_t kMaxFds = 4;
/* Nesting of arrays/objects, counting the message object itself as 1. */
inline constexpr std::size_t kMaxDepth = 64;
inline constexpr std::size_t kMaxOpLength = 64;

enum class ErrorCode {
	bad_request,
	bad_fds,
	unsupported_version,
	unknown_op,
	busy,
	not_found,
	denied,
	exhausted,
	internal,
};

std::string_view to_string(ErrorCode code);
std::optional<ErrorCode> error_code_from_string(std::string_view name);

/* Why a message was refused; message names the offending field ("idle_timeout_ms: must be …"). */
struct Failure {
	ErrorCode code;
	std::string message;
};

/* A request whose envelope is valid; body is the whole JSON object (op-specific fields inside). */
struct Request {
	int v = kVersion;
	std::string op;
	std::string id;
	nlohmann::json body;
	std::size_t nfds = 0;
};

/*
 * Parses bytes as one request: a UTF-8 JSON object with "v" (an integer this build speaks,
 * else unsupported_version), "op" (a non-empty string) and "id" (a string of at most
 * kMaxIdLength bytes). Never throws.
 *
 * Checks, in order (the first failure is returned): at most kMaxMessageSize bytes
 * (bad_request); nfds <= kMaxFds (bad_fds; a transport that saw MSG_CTRUNC passes
 * kMaxFds + 1); not empty, valid UTF-8, valid JSON, nesting <= kMaxDepth, no duplicate keys
 * at any level, a JSON object (bad_request); v, op (1..kMaxOpLength bytes), id. Op-specific
 * fields and the fd count an op takes are checked by the decode_* functions of messages.h.
 */
Expected<Request, Failure> parse_request(std::string_view bytes, std::size_t nfds);

/*
 * A message as a client receives it (reply, event or error): like Request, but "id" may be
 * null (errors about messages whose id could not be read). Same checks as parse_request
 * otherwise. Never throws.
 */
struct Reply {
	int v = kVersion;
	std::string op;
	std::optional<std::string> id;
	nlohmann::json body;
	std::size_t nfds = 0;
};
Expected<Reply, Failure> parse_reply(std::string_view bytes, std::size_t nfds);

/* unknown_op, naming the op (cut to a printable length): `op: unknown operation "frob"`. */
Failure unknown_op_failure(std::string_view op);

/*
 * The "id" of a message that failed to parse, when one can still be read from it: the
 * message is at most kMaxMessageSize bytes of valid JSON, a JSON object, and its single
 * "id" key is a string of at most kMaxIdLength bytes. Otherwise nullopt (reply "id":null).
 */
std::optional<std::string> salvage_id(std::string_view bytes);

/* {"v":1,"op":"error","id":id|null,"code":…,"message":…}; throws only std::bad_alloc. */
std::string encode_error(const std::optional<std::string> &id, ErrorCode code,
			 std::string_view message);
std::string encode_error(const std::optional<std::string> &id, const Failure &failure);

/*
 * {"v":1,"op":op,"id":id|null, …fields}; fields must be a JSON object (or null). Keys of
 * fields named v, op or id are ignored (the envelope's own win); a non-object is treated as
 * null. Strings that are not valid UTF-8 are written with U+FFFD in their place, so the
 * result is always valid JSON. Throws only std::bad_alloc.
 */
std::string encode_message(const std::optional<std::string> &id, std::string_view op,
			   const nlohmann::json &fields = nullptr);

} // namespace shoal::proto
