// shoalctl: status, list, live upgrade and cancel for any shoal daemon, over its control socket.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "client.h"
#include "shoal_version.h"

namespace {

const char *kUsage =
	"Usage: shoalctl --socket PATH [--json] [--timeout MS] [--owner NAME] COMMAND [ARG]\n"
	"\n"
	"Talks to a shoal daemon (splicer, bumblebee, fish) over its control socket.\n"
	"\n"
	"Commands:\n"
	"  status          the daemon's version, uptime, clients and counters\n"
	"  list            the daemon's tasks, one JSON object per line\n"
	"  upgrade         live-upgrade the daemon: start its binary anew and hand every task over;\n"
	"                  exits 0 only once the new process has taken over\n"
	"  cancel TASK     end a splicer relay (its done event goes to the relay's owner)\n"
	"  release LEASE   end a fish lease\n"
	"\n"
	"Options:\n"
	"  --socket PATH   the daemon's control socket (required)\n"
	"  --json          print the daemon's reply as JSON\n"
	"  --timeout MS    how long to wait for the reply (default 10000; upgrade 120000)\n"
	"  --owner NAME    say hello as NAME first\n"
	"  --help, --version\n"
	"\n"
	"Exit status: 0 success; 1 the daemon answered with an error (its code and message go to\n"
	"stderr); 2 usage; 3 the daemon could not be reached or did not answer in time.\n";

void print_flat(const std::string &prefix, const nlohmann::json &j)
{
	if (j.is_object()) {
		for (const auto &[k, v] : j.items()) {
			if (prefix.empty() && (k == "v" || k == "op" || k == "id"))
				continue;
			print_flat(prefix.empty() ? k : prefix + "." + k, v);
		}
		return;
	}
	std::printf("%s: %s\n", prefix.c_str(), j.is_string() ? j.get<std::string>().c_str() : j.dump().c_str());
}

int usage_error(const std::string &what)
{
	std::fprintf(stderr, "shoalctl: %s\nTry 'shoalctl --help'.\n", what.c_str());
	return 2;
}

} // namespace

int main(int argc, char **argv)
{
	std::string socket, owner, command, arg;
	bool json = false;
	long timeout_ms = -1;
	std::vector<std::string> positional;

	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		auto value = [&](const char *name) -> std::optional<std::string> {
			std::string flag = std::string("--") + name;
			if (a == flag) {
				if (i + 1 >= argc)
					return std::nullopt;
				return std::string(argv[++i]);
			}
			return a.substr(flag.size() + 1);
		};
		if (a == "--help" || a == "-h") {
			std::fputs(kUsage, stdout);
			return 0;
		} else if (a == "--version") {
			std::printf("shoalctl %s (protocol v1)\n", SHOAL_VERSION);
			return 0;
		} else if (a == "--json") {
			json = true;
		} else if (a == "--socket" || a.rfind("--socket=", 0) == 0) {
			auto v = value("socket");
			if (!v)
				return usage_error("--socket needs a PATH");
			socket = *v;
		} else if (a == "--owner" || a.rfind("--owner=", 0) == 0) {
			auto v = value("owner");
			if (!v)
				return usage_error("--owner needs a NAME");
			owner = *v;
		} else if (a == "--timeout" || a.rfind("--timeout=", 0) == 0) {
			auto v = value("timeout");
			char *end = nullptr;
			if (!v || (timeout_ms = std::strtol(v->c_str(), &end, 10)) <= 0 || *end)
				return usage_error("--timeout needs a positive number of milliseconds");
		} else if (!a.empty() && a[0] == '-') {
			return usage_error("unknown option " + a);
		} else {
			positional.push_back(a);
		}
	}
	if (socket.empty())
		return usage_error("--socket PATH is required");
	if (positional.empty())
		return usage_error("no command given");
	command = positional[0];

	std::string op;
	nlohmann::json fields = nlohmann::json::object();
	std::size_t want_args = 0;
	if (command == "status" || command == "list") {
		op = command;
	} else if (command == "upgrade") {
		op = "upgrade_daemon";
		if (timeout_ms < 0)
			timeout_ms = 120000;
	} else if (command == "cancel" || command == "release") {
		want_args = 1;
		op = command;
	} else {
		return usage_error("unknown command " + command);
	}
	if (positional.size() != want_args + 1)
		return usage_error(command + (want_args ? " takes one argument" : " takes no argument"));
	if (command == "cancel")
		fields["task"] = positional[1];
	if (command == "release")
		fields["lease"] = positional[1];
	if (timeout_ms < 0)
		timeout_ms = 10000;

	auto client = shoal::Client::connect(socket);
	if (!client) {
		std::fprintf(stderr, "shoalctl: cannot connect to %s: %s\n", socket.c_str(), std::strerror(client.error()));
		return 3;
	}
	std::chrono::milliseconds timeout(timeout_ms);
	if (!owner.empty()) {
		auto r = client->call("hello", {{"owner", owner}}, {}, timeout);
		if (!r) {
			std::fprintf(stderr, "shoalctl: hello: %s\n", std::strerror(r.error()));
			return 3;
		}
	}
	if (command == "list") {
		/* Follow the pages: one message holds a few hundred tasks. */
		nlohmann::json all = nlohmann::json::array();
		std::uint64_t offset = 0;
		for (;;) {
			nlohmann::json f = offset ? nlohmann::json{{"offset", offset}} : nlohmann::json::object();
			auto page = client->call("list", f, {}, timeout);
			if (!page) {
				std::fprintf(stderr, "shoalctl: list: %s\n", std::strerror(page.error()));
				return 3;
			}
			if (page->is_error()) {
				std::fprintf(stderr, "shoalctl: list: %s: %s\n", page->json.value("code", "?").c_str(),
					     page->json.value("message", "").c_str());
				return 1;
			}
			for (auto &t : page->json["tasks"])
				all.push_back(std::move(t));
			if (!page->json.contains("next_offset") || page->json["next_offset"].is_null())
				break;
			offset = page->json["next_offset"].get<std::uint64_t>();
		}
		if (json)
			std::printf("%s\n", nlohmann::json{{"op", "list"}, {"tasks", all}, {"total", all.size()}}.dump(2).c_str());
		else
			for (const auto &t : all)
				std::printf("%s\n", t.dump().c_str());
		return 0;
	}
	auto reply = client->call(op, fields, {}, timeout);
	if (!reply) {
		std::fprintf(stderr, "shoalctl: %s: %s\n", command.c_str(),
			     reply.error() == ETIMEDOUT ? "no reply in time" : std::strerror(reply.error()));
		return 3;
	}
	const nlohmann::json &j = reply->json;
	if (reply->is_error()) {
		std::fprintf(stderr, "shoalctl: %s: %s: %s\n", command.c_str(), j.value("code", "?").c_str(),
			     j.value("message", "").c_str());
		if (json)
			std::printf("%s\n", j.dump().c_str());
		return 1;
	}
	if (json) {
		std::printf("%s\n", j.dump(2).c_str());
	} else if (command == "upgrade") {
		std::printf("upgraded: pid %d -> pid %d, %llu tasks handed over in %lld ms\n",
			    j.value("old_pid", 0), j.value("new_pid", 0),
			    static_cast<unsigned long long>(j.value("tasks", 0ULL)),
			    static_cast<long long>(j.value("duration_ms", 0LL)));
	} else {
		print_flat("", j);
	}
	return 0;
}
