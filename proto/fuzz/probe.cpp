// Configure-time probe: can this clang++ link a libFuzzer target with ASan and UBSan?
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *, std::size_t)
{
	return 0;
}
