// Base64 encode/decode for byte fields in protocol messages.
#include <shoal/proto/base64.h>

#include <array>
#include <cstdint>

namespace shoal::proto {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int, 256> decode_table()
{
	std::array<int, 256> t{};
	for (int &v : t)
		v = -1;
	for (int i = 0; i < 64; i++)
		t[static_cast<unsigned char>(kAlphabet[i])] = i;
	return t;
}

} // namespace

std::string base64_encode(std::string_view in)
{
	std::string out;
	out.reserve((in.size() + 2) / 3 * 4);
	std::size_t i = 0;
	for (; i + 2 < in.size(); i += 3) {
		std::uint32_t v = static_cast<std::uint8_t>(in[i]) << 16 | static_cast<std::uint8_t>(in[i + 1]) << 8 |
				  static_cast<std::uint8_t>(in[i + 2]);
		out += kAlphabet[v >> 18];
		out += kAlphabet[(v >> 12) & 63];
		out += kAlphabet[(v >> 6) & 63];
		out += kAlphabet[v & 63];
	}
	if (std::size_t rest = in.size() - i) {
		std::uint32_t v = static_cast<std::uint8_t>(in[i]) << 16;
		if (rest == 2)
			v |= static_cast<std::uint8_t>(in[i + 1]) << 8;
		out += kAlphabet[v >> 18];
		out += kAlphabet[(v >> 12) & 63];
		out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
		out += '=';
	}
	return out;
}

std::optional<std::string> base64_decode(std::string_view in)
{
	static constexpr auto table = decode_table();
	if (in.size() % 4 != 0)
		return std::nullopt;
	std::string out;
	out.reserve(in.size() / 4 * 3);
	for (std::size_t i = 0; i < in.size(); i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			char c = in[i + static_cast<std::size_t>(k)];
			bool last = i + 4 == in.size();
			if (c == '=' && last && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad)
				return std::nullopt; /* data after padding */
			v[k] = table[static_cast<unsigned char>(c)];
			if (v[k] < 0)
				return std::nullopt;
		}
		std::uint32_t n = static_cast<std::uint32_t>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
		out += static_cast<char>(n >> 16);
		if (pad < 2)
			out += static_cast<char>((n >> 8) & 255);
		if (pad < 1)
			out += static_cast<char>(n & 255);
	}
	return out;
}

} // namespace shoal::proto
