// bench_splice_rate: how many `splice` requests per second splicer accepts, pipelined over a few connections.
//
// Each request carries a fresh AF_UNIX socketpair as [a, b] (both ends: the relay is live but
// idle). The pairs are made before a batch's clock starts and our copies closed after it stops,
// so the timed part is what a proxy does per relay: send one message, read one reply. Counts `accepted` over the time from a batch's first send to its
// last reply; then cancels the batch's tasks and waits for each `done` (its sockets are closed on
// receipt), so nothing outlives the run. A safety idle_timeout_ms ends any task we failed to cancel.
#include <poll.h>
#include <sys/un.h>

#include <array>
#include <csignal>
#include <map>
#include <optional>
#include <string_view>
#include <sys/resource.h>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <shoal/fdpass/message.h>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_splice_rate --socket PATH --count N [--connections C] [--window W]\n"
	"                         [--batch B] [--idle-timeout-ms MS] [--timeout SECONDS]\n"
	"Sends N splice requests over C connections (default 2), at most W unanswered on each\n"
	"(default 64, splicer's default limits.max_inflight), timing batches of B (default 5000)\n"
	"and cancelling each batch's tasks, untimed, before the next; prints JSON.\n";

struct Conn {
	int fd = -1;
	std::size_t in_flight = 0;
	bool blocked = false; /* the last send hit EAGAIN: wait for POLLOUT */
	std::vector<std::string> tasks;
	std::size_t cancelled = 0; /* tasks[0, cancelled) have had their cancel sent */
	std::size_t done = 0;
};

/*
 * The string value of "key" in a compact JSON object, found without a full parse: splicer writes
 * v, op, id first, and ops and task ids need no escapes. nullopt sends the caller to a real parser.
 */
std::optional<std::string_view> quick_string(std::string_view data, std::string_view key)
{
	std::string pat = "\"" + std::string(key) + "\":\"";
	auto at = data.find(pat);
	if (at == std::string_view::npos)
		return std::nullopt;
	auto start = at + pat.size();
	auto end = data.find('"', start);
	if (end == std::string_view::npos || data.substr(start, end - start).find('\\') != std::string_view::npos)
		return std::nullopt;
	return data.substr(start, end - start);
}



} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	std::string path = args.str("socket");
	std::size_t count = args.num("count", 0);
	std::size_t nconn = args.num("connections", 2);
	std::size_t window = args.num("window", 64);
	std::size_t batch = args.num("batch", 5000);
	std::uint64_t idle_ms = args.num("idle-timeout-ms", 600000);
	double timeout = static_cast<double>(args.num("timeout", 120));
	if (count == 0 || nconn == 0 || window == 0 || batch == 0)
		bench::die("--count, --connections, --window and --batch must be positive");
	bench::raise_nofile();
	::signal(SIGPIPE, SIG_IGN);

	std::vector<Conn> conns(nconn);
	for (Conn &c : conns) {
		c.fd = bench::connect_unix(path);
		::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
	}
	std::vector<pollfd> pfds(nconn);
	auto span = std::chrono::duration_cast<bench::Clock::duration>(std::chrono::duration<double>(timeout));

	std::size_t sent = 0, accepted = 0, splice_errors = 0, cancel_errors = 0, cancelling = 0, done = 0;
	std::size_t batch_start = 0, batch_end = 0; /* requests [batch_start, batch_end) form the current batch */
	/*
	 * The batch's socketpairs, made before its clock starts and closed after it stops: making
	 * sockets is the proxy's cost, not splicer's. Our copies are mere references once sent.
	 */
	std::vector<std::array<int, 2>> pairs;
	std::map<std::string, std::size_t> error_codes;
	std::string first_error;
	std::uint64_t next_id = 1;
	bool cancel_phase = false;

	/* Sends what the window allows on c: splices in the first phase, cancels in the second. */
	auto pump = [&](Conn &c) {
		while (c.in_flight < window) {
			std::string id = std::to_string(next_id);
			if (!cancel_phase) {
				if (sent >= batch_end)
					return;
				std::string msg = "{\"v\":1,\"op\":\"splice\",\"id\":\"" + id + "\",\"metadata\":{\"n\":" + id +
						  "},\"idle_timeout_ms\":" + std::to_string(idle_ms) + "}";
				auto r = shoal::send_message(c.fd, msg, pairs[sent - batch_start]);
				if (!r) {
					if (r.error() != EAGAIN)
						bench::die("send: %s", std::strerror(r.error()));
					c.blocked = true;
					return;
				}
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
			auto quick_op = quick_string(r->data, "op");
			if (quick_op == "done") {
				c.done++;
				done++;
				continue; /* the returned sockets close with r's fds */
			}
			if (quick_op == "accepted") {
				if (auto task = quick_string(r->data, "task")) {
					c.in_flight--;
					accepted++;
					c.tasks.emplace_back(*task);
					continue;
				}
			}
			if (quick_op == "cancelling") {
				c.in_flight--;
				cancelling++;
				continue;
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
				(cancel_phase ? cancel_errors : splice_errors)++;
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

	/*
	 * In batches: each batch's tasks are cancelled (untimed) before the next starts, so splicer
	 * never holds more than --batch idle relays and stays within its descriptor limit.
	 */
	double secs = 0, cancel_secs = 0, own_cpu = 0;
	bool ok = true;
	while (ok && batch_end < count) {
		batch_start = batch_end;
		batch_end = std::min(count, batch_end + batch);
		pairs.resize(batch_end - batch_start);
		for (auto &p : pairs)
			if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.data()) < 0)
				bench::die("socketpair: %s", std::strerror(errno));
		cancel_phase = false;
		double cpu0 = bench::cpu_seconds();
		auto t0 = bench::Clock::now();
		if (!run([&] { return accepted + splice_errors >= batch_end; }))
			bench::die("timed out: %zu of %zu splice requests answered", accepted + splice_errors, batch_end);
		secs += bench::seconds_since(t0);
		own_cpu += bench::cpu_seconds() - cpu0;
		for (auto &p : pairs) {
			::close(p[0]);
			::close(p[1]);
		}

		cancel_phase = true;
		auto t1 = bench::Clock::now();
		ok = run([&] { return done >= accepted && cancelling + cancel_errors >= accepted; });
		cancel_secs += bench::seconds_since(t1);
	}

	nlohmann::json codes = error_codes;
	std::printf("{\"requests\":%zu,\"accepted\":%zu,\"errors\":%zu,\"error_codes\":%s,\"seconds\":%.6f,"
		    "\"per_second\":%.1f,\"connections\":%zu,\"window\":%zu,\"batch\":%zu,\"own_cpu_seconds\":%.6f,\"cancel_seconds\":%.6f,"
		    "\"cancel_errors\":%zu,\"done\":%zu,\"cleanup_complete\":%s,\"first_error\":%s}\n",
		    count, accepted, splice_errors, codes.dump().c_str(), secs, static_cast<double>(accepted) / secs,
		    nconn, window, batch, own_cpu, cancel_secs, cancel_errors, done, ok ? "true" : "false",
		    nlohmann::json(first_error).dump().c_str());
	for (Conn &c : conns)
		::close(c.fd);
	return 0;
}
