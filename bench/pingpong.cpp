// bench_pingpong: 1-byte round-trip latency through a relay to bench_server's echo; prints p50/p99 as JSON.
//
// One blocking connection: write one byte, block in read for the echo, record the time. Blocking
// reads sleep in the kernel, so nothing spins; the relay's wake-up cost is exactly what is measured.
#include <algorithm>
#include <string>
#include <vector>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_pingpong --connect 127.0.0.1:PORT [--count N] [--warmup N] [--raw]\n"
	"Times N 1-byte round trips (default 20000) after a warm-up (default 1000); prints JSON.\n"
	"--raw adds every sample (\"samples_ns\"), so runs can be pooled.\n";

void full_write(int fd, const void *p, std::size_t n)
{
	const char *c = static_cast<const char *>(p);
	while (n > 0) {
		ssize_t r = ::write(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			bench::die("write: %s", std::strerror(errno));
		c += r;
		n -= static_cast<std::size_t>(r);
	}
}

void read_one(int fd)
{
	char b;
	for (;;) {
		ssize_t r = ::read(fd, &b, 1);
		if (r == 1)
			return;
		if (r < 0 && errno == EINTR)
			continue;
		bench::die("read: %s", r == 0 ? "EOF" : std::strerror(errno));
	}
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in addr = bench::parse_endpoint(args.str("connect"));
	std::size_t count = args.num("count", 20000);
	std::size_t warmup = args.num("warmup", 1000);
	bool raw = args.flag("raw");
	if (count == 0)
		bench::die("--count must be positive");

	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		bench::die("socket: %s", std::strerror(errno));
	bench::set_nodelay(fd);
	/* A relay that never answers must not hang the benchmark. */
	timeval tv{10, 0};
	::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (::connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof addr) < 0)
		bench::die("connect: %s", std::strerror(errno));
	full_write(fd, "E", 1);

	std::vector<std::int64_t> ns;
	ns.reserve(count);
	for (std::size_t i = 0; i < warmup + count; i++) {
		auto t0 = bench::Clock::now();
		full_write(fd, "p", 1);
		read_one(fd);
		auto dt = std::chrono::duration_cast<std::chrono::nanoseconds>(bench::Clock::now() - t0).count();
		if (i >= warmup)
			ns.push_back(dt);
	}
	bench::close_abort(fd);

	std::string samples;
	if (raw) {
		/* In the order measured, before sorting, in case someone wants to see drift over time. */
		samples = ",\"samples_ns\":[";
		for (std::size_t i = 0; i < ns.size(); i++)
			samples += (i ? "," : "") + std::to_string(ns[i]);
		samples += "]";
	}
	std::sort(ns.begin(), ns.end());
	auto pct = [&](double p) {
		std::size_t i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(ns.size() - 1) + 0.5);
		return static_cast<double>(ns[i]) / 1000.0;
	};
	double sum = 0;
	for (auto v : ns)
		sum += static_cast<double>(v);
	std::printf("{\"count\":%zu,\"min_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
		    "\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f%s}\n",
		    ns.size(), pct(0), pct(50), pct(90), pct(99), pct(99.9), pct(100),
		    sum / static_cast<double>(ns.size()) / 1000.0, samples.c_str());
	return 0;
}
