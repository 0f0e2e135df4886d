// splicer at scale: 100,000 mostly-idle relays fit, hold no pipe, keep relaying, and survive a live upgrade.
#include <catch.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include "daemon_fixture.h"
#include "relay_world.h"

using namespace shoal;
using namespace shoal::test;
using namespace std::chrono_literals;

namespace {

/*
 * 100,000 relays are 200,000 descriptors here and as many in splicer. Lifting the hard limit
 * needs CAP_SYS_RESOURCE; without it, as many relays as the hard limit allows.
 */
std::size_t relays_that_fit(std::size_t want)
{
	struct rlimit rl {};
	::getrlimit(RLIMIT_NOFILE, &rl);
	rlim_t need = static_cast<rlim_t>(want * 2 + 1000);
	if (rl.rlim_max < need) {
		struct rlimit up {need, need};
		if (::setrlimit(RLIMIT_NOFILE, &up) == 0)
			return want;
		return (rl.rlim_max - 200) / 2;
	}
	rl.rlim_cur = rl.rlim_max;
	::setrlimit(RLIMIT_NOFILE, &rl);
	return want;
}

std::size_t rss_kib(pid_t pid)
{
	FILE *f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
	if (!f)
		return 0;
	char line[256];
	std::size_t kib = 0;
	while (std::fgets(line, sizeof(line), f))
		if (std::sscanf(line, "VmRSS: %zu kB", &kib) == 1)
			break;
	std::fclose(f);
	return kib;
}

} // namespace

TEST_CASE("up to 100,000 mostly-idle relays fit and keep working through a live upgrade", "[scale]")
{
	const std::size_t kRelays = relays_that_fit(100000);
	if (kRelays < 100000)
		WARN("RLIMIT_NOFILE's hard limit cannot be raised here (no CAP_SYS_RESOURCE): " << kRelays << " relays");
	TestDaemon d("services/splicer/splicer", {"--log-level", "info"});
	std::size_t rss_before = rss_kib(d.process.pid());

	Client proxy = d.connect();
	REQUIRE(proxy.call("hello", {{"owner", "scale"}})->op() == "welcome");
	std::vector<std::pair<UniqueFd, UniqueFd>> ends; /* (client, server) of each relay */
	ends.reserve(kRelays);
	/* Pipelined: many requests in flight, replies collected in batches. */
	constexpr std::size_t kBatch = 48;
	for (std::size_t i = 0; i < kRelays; i += kBatch) {
		std::vector<std::string> ids;
		for (std::size_t j = i; j < std::min(kRelays, i + kBatch); j++) {
			RelayEnds e = make_relay_ends(AF_UNIX);
			int fds[2] = {e.a.get(), e.b.get()};
			auto id = proxy.send("splice", {{"metadata", j}}, fds);
			REQUIRE(id);
			ids.push_back(*id);
			ends.emplace_back(std::move(e.client), std::move(e.server));
		}
		for (const std::string &id : ids) {
			auto r = proxy.wait_reply(id, 30s);
			REQUIRE(r);
			REQUIRE(r->op() == "accepted");
		}
	}
	auto s = proxy.call("status", {}, {}, 60s);
	REQUIRE(s);
	CHECK(s->json.at("relays").at("active") == kRelays);
	CHECK(s->json.at("pipes").at("in_use") == 0); /* idle relays hold no pipe */
	std::size_t rss_after = rss_kib(d.process.pid());
	WARN("splicer RSS: " << rss_before << " KiB idle, " << rss_after << " KiB with " << kRelays
			     << " relays = " << (rss_after - rss_before) * 1024 / kRelays << " bytes per relay");

	auto sample = [&](const char *when) {
		INFO(when);
		for (std::size_t i = 0; i < kRelays; i += 997) {
			std::string msg = "relay " + std::to_string(i);
			REQUIRE(write_all(ends[i].first.get(), msg));
			REQUIRE(read_n(ends[i].second.get(), msg.size()) == msg);
			REQUIRE(write_all(ends[i].second.get(), msg));
			REQUIRE(read_n(ends[i].first.get(), msg.size()) == msg);
		}
	};
	sample("before the upgrade");

	CommandResult up = d.shoalctl({"--timeout", "120000", "upgrade"});
	INFO(up.output);
	REQUIRE(up.status == 0);
	WARN(up.output);
	{
		std::string log = d.log_text();
		auto at = log.find("Live upgrade: handed");
		if (at != std::string::npos)
			WARN(log.substr(at, log.find('\n', at) - at));
	}
	sample("after the upgrade");
	auto s2 = proxy.call("status", {}, {}, 60s);
	REQUIRE(s2);
	CHECK(s2->json.at("relays").at("active") == kRelays);
	CHECK(s2->json.at("upgrades") == 1);
}
