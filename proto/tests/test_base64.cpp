// base64 round trips and rejection of malformed text.
#include <catch.hpp>

#include <shoal/proto/base64.h>

using namespace shoal::proto;

TEST_CASE("base64 matches RFC 4648 test vectors", "[base64]")
{
	const std::pair<const char *, const char *> vectors[] = {
		{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	for (auto [plain, coded] : vectors) {
		CHECK(base64_encode(plain) == coded);
		CHECK(base64_decode(coded) == std::string(plain));
	}
	std::string all;
	for (int i = 0; i < 256; i++)
		all += static_cast<char>(i);
	CHECK(base64_decode(base64_encode(all)) == all);
}

TEST_CASE("base64 rejects malformed text", "[base64]")
{
	for (const char *bad : {"Zg=", "Zg", "Z===", "Zm9v!A==", "Zg==Zg==", "=Zg="})
		CHECK_FALSE(base64_decode(bad));
}
