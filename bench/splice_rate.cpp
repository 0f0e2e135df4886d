// bench_splice_rate: how many `splice` requests per second splicer accepts, pipelined over a few connections.
//
// Each request carries a fresh AF_UNIX socketpair as [a, b] (both ends: the relay is live but
// idle, and we keep no descriptor per task). Our copies are closed right after sending, since the
// message holds its own references. Counts `accepted` over the time from the first send to the
// last reply; then cancels every task and waits for each `done` (its sockets are closed on
// receipt), so nothing outlives the run. A safety idle_timeout_ms ends any task we failed to cancel.
#include <poll.h>
#include <sys/un.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <shoal/fdpass/message.h>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_splice_rate --socket PATH --count N [--connections C] [--window W]\n"
	"                         [--idle-timeout-ms MS] [--timeout SECONDS]\n"
	"Sends N splice requests over C connections (default 2), at most W unanswered on each\n"
	"(default 64, splicer's default limits.max_inflight); prints JSON.\n";

struct Conn {
	int fd = -1;
	std::size_t in_flight = 0;
	bool blocked = false;    /* the last send hit EAGAIN: wait for POLLOUT */
	int spare[2] = {-1, -1}; /* a socketpair whose send hit EAGAIN, for the next try */
	std::vector<std::string> tasks;
	std::size_t cancelled = 0; /* tasks[0, cancelled) have had their cancel sent */
	std::size_t done = 0;
};

int connect_unix(const std::string &path)
{
	int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		bench::die("socket: %s", std::strerror(errno));
	sockaddr_un sun{};
	sun.sun_family = AF_UNIX;
	if (path.size() >= sizeof sun.sun_path)
		bench::die("socket path too long: %s", path.c_str());
	std::memcpy(sun.sun_path, path.c_str(), path.size());
	if (::connect(fd, reinterpret_cast<sockaddr *>(&sun), sizeof sun) < 0)
		bench::die("connect %s: %s", path.c_str(), std::strerror(errno));
	::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	std::string path = args.str("socket");
	std::size_t count = args.num("count", 0);
	std::size_t nconn = args.num("connections", 2);
	std::size_t window = args.num("window", 64);
	std::uint64_t idle_ms = args.num("idle-timeout-ms", 600000);
	double timeout = static_cast<double>(args.num("timeout", 120));
	if (count == 0 || nconn == 0 || window == 0)
		bench::die("--count, --connections and --window must be positive");
	bench::raise_nofile();
	::signal(SIGPIPE, SIG_IGN);

	std::vector<Conn> conns(nconn);
	for (Conn &c : conns)
		c.fd = connect_unix(path);
	std::vector<pollfd> pfds(nconn);
	auto span = std::chrono::duration_cast<bench::Clock::duration>(std::chrono::duration<double>(timeout));

	std::size_t sent = 0, accepted = 0, errors = 0, cancelling = 0, done = 0;
	std::map<std::string, std::size_t> error_codes;
	std::string first_error;
	std::uint64_t next_id = 1;
	bool cancel_phase = false;

	/* Sends what the window allows on c: splices in the first phase, cancels in the second. */
	auto pump = [&](Conn &c) {
		while (c.in_flight < window) {
			std::string id = std::to_string(next_id);
			if (!cancel_phase) {
				if (sent >= count)
					return;
				if (c.spare[0] < 0 && ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.spare) < 0)
					bench::die("socketpair: %s", std::strerror(errno));
				std::string msg = "{\"v\":1,\"op\":\"splice\",\"id\":\"" + id + "\",\"metadata\":{\"n\":" + id +
						  "},\"idle_timeout_ms\":" + std::to_string(idle_ms) + "}";
				auto r = shoal::send_message(c.fd, msg, c.spare);
				if (!r) {
					if (r.error() != EAGAIN)
						bench::die("send: %s", std::strerror(r.error()));
					c.blocked = true;
					return;
				}
				::close(c.spare[0]);
				::close(c.spare[1]);
				c.spare[0] = c.spare[1] = -1;
				sent++;
			} else {
				if (c.cancelled >= c.tasks.size())
					return;
				std::string msg = "{\"v\":1,\"op\":\"cancel\",\"id\":\"" + id + "\",\"task\":" +
						  nlohmann::json(c.tasks[c.cancelled]).dump() + "}";
				auto r = shoal::send_message(c.fd, msg);
				if (!r) {
					if (r.error() != EAGAIN)
						bench::die("send: %s", std::strerror(r.error()));
					c.blocked = true;
					return;
				}
				c.cancelled++;
			}
			next_id++;
			c.in_flight++;
		}
	};

	auto read_replies = [&](Conn &c) {
		for (;;) {
			auto r = shoal::recv_message(c.fd);
			if (!r) {
				if (r.error() == EAGAIN)
					return;
				bench::die("splicer connection: %s", std::strerror(r.error()));
			}
			auto j = nlohmann::json::parse(r->data, nullptr, false);
			std::string op = j.is_object() ? j.value("op", "") : "";
			if (op == "done") {
				c.done++;
				done++;
				continue; /* the returned sockets close with r's fds */
			}
			c.in_flight--;
			if (op == "accepted") {
				accepted++;
				c.tasks.push_back(j.value("task", ""));
			} else if (op == "cancelling") {
				cancelling++;
			} else {
				errors++;
				error_codes[j.is_object() ? j.value("code", "?") : "?"]++;
				if (first_error.empty())
					first_error = r->data;
			}
		}
	};

	/* Runs until finished() or the deadline; returns false on timeout. */
	auto run = [&](auto finished) {
		auto deadline = bench::Clock::now() + span;
		for (Conn &c : conns)
			pump(c);
		while (!finished()) {
			for (std::size_t i = 0; i < nconn; i++) {
				pfds[i].fd = conns[i].fd;
				pfds[i].events = POLLIN | (conns[i].blocked ? POLLOUT : 0);
				pfds[i].revents = 0;
			}
			int n = ::poll(pfds.data(), nconn, bench::ms_until(deadline));
			if (n < 0 && errno != EINTR)
				bench::die("poll: %s", std::strerror(errno));
			if (n == 0 && bench::Clock::now() >= deadline)
				return false;
			for (std::size_t i = 0; i < nconn; i++) {
				if (pfds[i].revents & (POLLIN | POLLERR | POLLHUP))
					read_replies(conns[i]);
				if (pfds[i].revents & POLLOUT)
					conns[i].blocked = false;
				pump(conns[i]);
			}
		}
		return true;
	};

	auto t0 = bench::Clock::now();
	bool ok = run([&] { return accepted + errors >= count; });
	double secs = bench::seconds_since(t0);
	if (!ok)
		bench::die("timed out: %zu of %zu splice requests answered", accepted + errors, count);

	cancel_phase = true;
	auto t1 = bench::Clock::now();
	std::size_t errors_before = errors;
	ok = run([&] { return done >= accepted && cancelling + (errors - errors_before) >= accepted; });
	double cancel_secs = bench::seconds_since(t1);

	nlohmann::json codes = error_codes;
	std::printf("{\"requests\":%zu,\"accepted\":%zu,\"errors\":%zu,\"error_codes\":%s,\"seconds\":%.6f,"
		    "\"per_second\":%.1f,\"connections\":%zu,\"window\":%zu,\"cancel_seconds\":%.6f,"
		    "\"done\":%zu,\"cleanup_complete\":%s,\"first_error\":%s}\n",
		    count, accepted, errors, codes.dump().c_str(), secs, static_cast<double>(accepted) / secs, nconn,
		    window, cancel_secs, done, ok ? "true" : "false", nlohmann::json(first_error).dump().c_str());
	for (Conn &c : conns)
		::close(c.fd);
	return 0;
}
