// Base64 (RFC 4648, padded) for the protocol's byte-carrying fields, such as done's unsent_a_to_b.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace shoal::proto {

std::string base64_encode(std::string_view bytes);
/* Nothing for input that is not padded base64 of the standard alphabet. */
std::optional<std::string> base64_decode(std::string_view text);

} // namespace shoal::proto
