// Replays fuzz corpus files through LLVMFuzzerTestOneInput without libFuzzer, so g++ builds test them too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size);

namespace fs = std::filesystem;

int main(int argc, char **argv)
{
	if (argc < 2) {
		std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	std::vector<fs::path> inputs;
	for (int i = 1; i < argc; ++i) {
		std::error_code ec;
		fs::path p(argv[i]);
		if (fs::is_directory(p, ec)) {
			for (const auto &entry : fs::directory_iterator(p, ec))
				if (entry.is_regular_file())
					inputs.push_back(entry.path());
		} else if (fs::is_regular_file(p, ec)) {
			inputs.push_back(p);
		} else {
			std::fprintf(stderr, "%s: not a file or directory\n", argv[i]);
			return 2;
		}
	}
	/* Sorted, so a failure names the same input on every run. */
	std::sort(inputs.begin(), inputs.end());
	if (inputs.empty()) {
		/* An empty corpus would make this test pass while testing nothing. */
		std::fprintf(stderr, "no inputs found\n");
		return 1;
	}
	for (const auto &path : inputs) {
		std::ifstream in(path, std::ios::binary);
		std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
		if (!in.good() && !in.eof()) {
			std::fprintf(stderr, "%s: cannot read\n", path.c_str());
			return 1;
		}
		std::fprintf(stderr, "%s\n", path.c_str());
		LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t *>(bytes.data()), bytes.size());
	}
	std::printf("replayed %zu inputs\n", inputs.size());
	return 0;
}
