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
 */
Expected<Request, Failure> parse_request(std::string_view bytes, std::size_t nfds);

/* The "id" of a message that failed to parse, when one can still be read from it. */
std::optional<std::string> salvage_id(std::string_view bytes);

/* {"v":1,"op":"error","id":id|null,"code":…,"message":…} */
std::string encode_error(const std::optional<std::string> &id, ErrorCode code,
			 std::string_view message);
std::string encode_error(const std::optional<std::string> &id, const Failure &failure);

/* {"v":1,"op":op,"id":id|null, …fields}; fields must be a JSON object (or null). */
std::string encode_message(const std::optional<std::string> &id, std::string_view op,
			   const nlohmann::json &fields = nullptr);

} // namespace shoal::proto
