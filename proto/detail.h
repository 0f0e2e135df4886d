// Private helpers shared by envelope.cpp and messages.cpp: strict JSON parsing and failure text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <shoal/proto/envelope.h>

namespace shoal::proto::detail {

inline Unexpected<Failure> fail(ErrorCode code, std::string message)
{
	return Unexpected(Failure{code, std::move(message)});
}

inline Unexpected<Failure> bad_request(std::string message)
{
	return fail(ErrorCode::bad_request, std::move(message));
}

/*
 * s cut to at most max bytes at a UTF-8 boundary, with "…" appended when cut: client text
 * echoed into an error must not let the reply outgrow a datagram.
 */
std::string printable(std::string_view s, std::size_t max = 64);

/* The outcome of parse_document: value is meaningful only when failure is empty. */
struct Document {
	nlohmann::json value;
	std::optional<Failure> failure;
	/* The whole text was read as JSON within the limits (failure can still be a duplicate key). */
	bool complete = false;
	/* The top-level object had "id" more than once, so no single id can be echoed. */
	bool id_ambiguous = false;
};

/*
 * Size, UTF-8, JSON syntax, nesting and duplicate-key checks of one message; no envelope
 * checks. Never throws (an allocation failure becomes an internal failure).
 */
Document parse_document(std::string_view bytes);

} // namespace shoal::proto::detail
