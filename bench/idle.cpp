// bench_idle: holds N idle connections open through a relay (for memory per idle relay and live-upgrade handover).
//
// Each connection proves it is relayed end to end with one zero-length round to bench_server's
// sink, then stays idle. Commands on stdin, one per line: "check" makes every connection do one
// more round (to show relays survived a handover), "close" (or EOF) closes them all with an RST.
// Events are printed on stdout as JSON lines.
#include <sys/epoll.h>

#include <string>
#include <vector>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_idle --connect 127.0.0.1:PORT --count N [--parallel P] [--timeout SECONDS]\n"
	"Opens N idle relayed connections (P handshakes at a time, default 200); then reads\n"
	"\"check\" / \"close\" commands on stdin and prints JSON events on stdout.\n";

enum class State { Unopened, Connecting, Round, Idle, Dead };

struct Conn {
	int fd = -1;
	State state = State::Unopened;
};

constexpr std::uint32_t kStdin = 0xffffffffu;

int ep = -1;
std::vector<Conn> conns;
int first_error = 0;

void set_events(std::uint32_t i, std::uint32_t events)
{
	epoll_event ev{};
	ev.events = events;
	ev.data.u32 = i;
	::epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev);
}

void mark_dead(std::uint32_t i, int err)
{
	if (!first_error)
		first_error = err ? err : EPIPE;
	Conn &c = conns[i];
	if (c.fd >= 0)
		bench::close_abort(c.fd);
	c.fd = -1;
	c.state = State::Dead;
}

/* Starts one zero-length round: the mode byte only on the first round. */
void start_round(std::uint32_t i, bool first)
{
	static const char hello[9] = {'S', 0, 0, 0, 0, 0, 0, 0, 0};
	const char *p = first ? hello : hello + 1;
	std::size_t n = first ? 9 : 8;
	/* Nine bytes always fit in a fresh socket buffer. */
	if (::write(conns[i].fd, p, n) != static_cast<ssize_t>(n)) {
		mark_dead(i, errno);
		return;
	}
	conns[i].state = State::Round;
	set_events(i, EPOLLIN);
}

/* Handles one connection's event; returns true when a round it was in has finished (ok or not). */
bool handle(std::uint32_t i, std::uint32_t events)
{
	Conn &c = conns[i];
	switch (c.state) {
	case State::Connecting:
		if (int err = bench::socket_error(c.fd)) {
			mark_dead(i, err);
			return true;
		}
		if (!(events & EPOLLOUT))
			return false;
		start_round(i, true);
		return c.state == State::Dead;
	case State::Round: {
		char ack;
		ssize_t r = ::read(c.fd, &ack, 1);
		if (r < 0 && errno == EAGAIN)
			return false;
		if (r == 1 && ack == 'A') {
			c.state = State::Idle;
			return true;
		}
		mark_dead(i, r == 0 ? EPIPE : errno);
		return true;
	}
	case State::Idle: {
		/* An idle connection only wakes up when its relay dropped it. */
		char b;
		ssize_t r = ::read(c.fd, &b, 1);
		if (r < 0 && errno == EAGAIN)
			return false;
		mark_dead(i, r == 0 ? EPIPE : errno);
		return false;
	}
	default:
		return false;
	}
}

/* Runs the loop until `busy` rounds are over or the deadline passes; opens more via `next`. */
template <typename Next>
void run_rounds(std::size_t &busy, bench::Clock::time_point deadline, Next next)
{
	epoll_event events[512];
	while (busy > 0) {
		int n = ::epoll_wait(ep, events, 512, bench::ms_until(deadline));
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		if (n == 0 && bench::Clock::now() >= deadline)
			return;
		for (int k = 0; k < n; k++) {
			std::uint32_t i = events[k].data.u32;
			if (handle(i, events[k].events)) {
				busy--;
				next();
			}
		}
	}
}

std::size_t count_state(State s)
{
	std::size_t n = 0;
	for (const Conn &c : conns)
		n += c.state == s;
	return n;
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in addr = bench::parse_endpoint(args.str("connect"));
	std::size_t count = args.num("count", 0);
	std::size_t parallel = args.num("parallel", 200);
	double timeout = static_cast<double>(args.num("timeout", 120));
	if (count == 0 || parallel == 0)
		bench::die("--count and --parallel must be positive");
	bench::raise_nofile();
	ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench::die("epoll_create1: %s", std::strerror(errno));
	conns.resize(count);
	auto span = std::chrono::duration_cast<bench::Clock::duration>(std::chrono::duration<double>(timeout));

	/* Open: at most `parallel` handshakes in flight, so the relay's accept backlog never overflows. */
	auto start = bench::Clock::now();
	std::size_t opened = 0, busy = 0;
	auto open_next = [&]() {
		while (busy < parallel && opened < count) {
			std::uint32_t i = static_cast<std::uint32_t>(opened++);
			int fd = bench::tcp_connect_nb(addr);
			if (fd < 0) {
				mark_dead(i, errno);
				continue;
			}
			conns[i].fd = fd;
			conns[i].state = State::Connecting;
			epoll_event ev{};
			ev.events = EPOLLOUT;
			ev.data.u32 = i;
			::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			busy++;
		}
	};
	open_next();
	run_rounds(busy, start + span, open_next);
	for (std::size_t i = 0; i < count; i++)
		if (conns[i].state != State::Idle && conns[i].state != State::Dead)
			mark_dead(static_cast<std::uint32_t>(i), ETIMEDOUT);
	std::printf("{\"event\":\"ready\",\"connections\":%zu,\"failed\":%zu,\"seconds\":%.3f,\"error\":\"%s\"}\n",
		    count_state(State::Idle), count - count_state(State::Idle), bench::seconds_since(start),
		    first_error ? std::strerror(first_error) : "");
	std::fflush(stdout);

	epoll_event sev{};
	sev.events = EPOLLIN;
	sev.data.u32 = kStdin;
	::epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
	bench::StdinCommands commands;
	epoll_event events[512];
	for (;;) {
		int n = ::epoll_wait(ep, events, 512, -1);
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		bool quit = false;
		for (int k = 0; k < n && !quit; k++) {
			std::uint32_t i = events[k].data.u32;
			if (i != kStdin) {
				handle(i, events[k].events);
				continue;
			}
			if (!commands.read_more()) {
				quit = true;
				break;
			}
			for (auto next = commands.next(); !quit && next; next = commands.next()) {
				const std::string &cmd = *next;
				if (cmd == "close") {
					quit = true;
				} else if (cmd == "check") {
					auto t0 = bench::Clock::now();
					std::size_t before = count_state(State::Idle);
					busy = 0;
					for (std::size_t c = 0; c < count; c++) {
						if (conns[c].state != State::Idle)
							continue;
						start_round(static_cast<std::uint32_t>(c), false);
						busy += conns[c].state == State::Round;
					}
					/* Stdin stays out of the set meanwhile: level-triggered, it would wake us for nothing. */
					::epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
					run_rounds(busy, t0 + span, [] {});
					::epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
					for (std::size_t c = 0; c < count; c++)
						if (conns[c].state == State::Round)
							mark_dead(static_cast<std::uint32_t>(c), ETIMEDOUT);
					std::size_t ok = count_state(State::Idle);
					std::printf("{\"event\":\"checked\",\"ok\":%zu,\"failed\":%zu,\"seconds\":%.3f}\n",
						    ok, before - ok, bench::seconds_since(t0));
					std::fflush(stdout);
				} else if (!cmd.empty()) {
					std::fprintf(stderr, "bench_idle: unknown command %s\n", cmd.c_str());
				}
			}
		}
		if (quit)
			break;
	}
	for (Conn &c : conns)
		if (c.fd >= 0)
			bench::close_abort(c.fd);
	std::printf("{\"event\":\"closed\"}\n");
	return 0;
}
