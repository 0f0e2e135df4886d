// bench_bumblebee_upgrades: drives hand-made TCP flows into bumblebee, pipelined: upgrades per second, or idle flows held open.
//
// Per flow, what a proxy does: a SOCK_SEQPACKET socketpair, the client's SYN written into it,
// `upgrade` with the pair's other end, the SYN-ACK read back, the final ACK written, `upgraded`
// read with the kernel socket. At most --window flows are between `upgrade` and `upgraded` at
// once, over one control connection.
//
// Rate mode (default): each flow is torn down as soon as it is upgraded (our flow socket is
// closed first, so bumblebee ends the flow with a RST to its kernel socket; then the kernel
// socket is closed with an RST too) and the next one starts. Prints one JSON line: upgrades per
// second = upgraded flows / time from the first upgrade sent to the last `upgraded` received.
// The `ended` events are drained as they come, and awaited (untimed) before exiting.
//
// Hold mode (--hold): flows stay open and idle, both our flow socket and the kernel socket.
// Commands on stdin, one per line: "open K" opens K more flows and prints {"event":"opened",…};
// "close" (or EOF) closes them all, waits for their `ended` and prints {"event":"closed",…}.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/un.h>

#include <csignal>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <shoal/fdpass/message.h>
#include <shoal/packet/packet.h>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_bumblebee_upgrades --socket PATH [--count N] [--window W] [--hold]\n"
	"                                [--timeout SECONDS] [--timeout-ms MS]\n"
	"Upgrades N hand-made TCP flows through bumblebee (default 20000), at most W (default 256)\n"
	"in flight, closing each once upgraded; prints JSON with upgrades per second.\n"
	"--hold: keeps flows open and idle instead; reads \"open K\" / \"close\" on stdin and\n"
	"prints JSON events on stdout.\n";

using shoal::packet::Endpoint;
namespace pk = shoal::packet;

enum class State : std::uint8_t { unused, syn_sent, ack_sent, upgraded, failed, closed };

struct Flow {
	int ours = -1;   /* our end of the flow socketpair: raw IP packets */
	int kernel = -1; /* the upgraded kernel socket (hold mode keeps it) */
	std::uint32_t isn = 0;
	State state = State::unused;
	bool ended = false;
	Endpoint client;
};

constexpr std::uint64_t kControl = ~0ull;
constexpr std::uint64_t kStdin = ~0ull - 1;

int ep = -1;
int ctl = -1;
bool ctl_blocked = false;
std::vector<Flow> flows;
Endpoint server_ep;
std::mt19937 rng{12345};
bool hold = false;
std::uint64_t timeout_ms_req = 0;

std::size_t sent = 0, synacks = 0, upgraded = 0, failed = 0, ended = 0, ended_before_upgrade = 0;
std::size_t refused = 0; /* answered by an error: no `ended` follows */
std::size_t in_flight = 0; /* between upgrade and its answer */
std::map<std::string, std::size_t> error_codes;
std::string first_error;
std::vector<std::size_t> pending_send; /* flows whose upgrade waits for the control socket to drain */



void note_error(const std::string &code, const std::string &text)
{
	error_codes[code]++;
	if (first_error.empty())
		first_error = text;
}

void send_packet(Flow &f, std::uint8_t flags, std::uint32_t seq, std::uint32_t ack)
{
	std::uint8_t buf[128];
	std::size_t len = pk::build_tcp(buf, sizeof buf, f.client, server_ep, seq, ack, flags, 65535);
	if (len == 0)
		bench::die("build_tcp failed");
	if (::send(f.ours, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(len))
		bench::die("flow socket send: %s", std::strerror(errno));
}

void close_flow(Flow &f, bool abort_kernel)
{
	if (f.ours >= 0)
		::close(f.ours); /* also leaves the epoll set: it was the only reference */
	f.ours = -1;
	if (f.kernel >= 0) {
		if (abort_kernel)
			bench::close_abort(f.kernel);
		else
			::close(f.kernel);
	}
	f.kernel = -1;
}

/* Sends flow i's upgrade (its SYN is already in the socket); false if the control socket is full. */
bool send_upgrade(std::size_t i, int theirs)
{
	std::string msg = "{\"v\":1,\"op\":\"upgrade\",\"id\":\"" + std::to_string(i) + "\",\"metadata\":null";
	if (timeout_ms_req)
		msg += ",\"timeout_ms\":" + std::to_string(timeout_ms_req);
	msg += "}";
	auto r = shoal::send_message(ctl, msg, std::span<const int>(&theirs, 1));
	if (!r) {
		if (r.error() == EAGAIN)
			return false;
		bench::die("upgrade send: %s", std::strerror(r.error()));
	}
	return true;
}

/* Starts flow i: socketpair, SYN, upgrade (or queued behind a full control socket). */
std::vector<int> theirs_of; /* flow index → the end still to be sent (only while queued) */

void start_flow(std::size_t i)
{
	Flow &f = flows[i];
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		bench::die("socketpair: %s (flow %zu)", std::strerror(errno), i);
	f.ours = sv[0];
	f.isn = rng();
	/* Distinct client endpoints, as from many clients: 10.x.y.z, ports 1024-65023. */
	std::uint32_t a = 0x0a000000u | static_cast<std::uint32_t>(i / 64000 + 2);
	f.client = Endpoint{pk::Addr::v4(a), static_cast<std::uint16_t>(1024 + i % 64000)};
	send_packet(f, pk::tcp_syn, f.isn, 0);
	epoll_event ev{};
	ev.events = EPOLLIN;
	ev.data.u64 = i;
	if (::epoll_ctl(ep, EPOLL_CTL_ADD, f.ours, &ev) < 0)
		bench::die("epoll_ctl: %s", std::strerror(errno));
	f.state = State::syn_sent;
	in_flight++;
	sent++;
	if (!pending_send.empty() || !send_upgrade(i, sv[1])) {
		theirs_of[i] = sv[1];
		pending_send.push_back(i);
		ctl_blocked = true;
		return;
	}
	::close(sv[1]);
}

void flush_pending()
{
	std::size_t k = 0;
	for (; k < pending_send.size(); k++) {
		std::size_t i = pending_send[k];
		if (!send_upgrade(i, theirs_of[i]))
			break;
		::close(theirs_of[i]);
		theirs_of[i] = -1;
	}
	pending_send.erase(pending_send.begin(), pending_send.begin() + static_cast<long>(k));
	ctl_blocked = !pending_send.empty();
}

void on_flow_readable(std::size_t i)
{
	Flow &f = flows[i];
	std::uint8_t buf[65536];
	for (;;) {
		ssize_t n = ::recv(f.ours, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			n = 0;
		}
		if (n == 0) {
			/* bumblebee closed its end: the flow ended (its `ended` says why). */
			::epoll_ctl(ep, EPOLL_CTL_DEL, f.ours, nullptr);
			return;
		}
		auto p = pk::parse(buf, static_cast<std::size_t>(n));
		if (!p || p->proto != pk::proto_tcp)
			continue;
		if (f.state == State::syn_sent && p->tcp_flags == (pk::tcp_syn | pk::tcp_ack) && p->ack == f.isn + 1) {
			synacks++;
			send_packet(f, pk::tcp_ack, f.isn + 1, p->seq + 1);
			f.state = State::ack_sent;
		}
		/* Anything else (a RST on timeout, a FIN) is left to the `ended` event. */
	}
}

/* Returns true when this answer finished an upgrade (so the caller may start another). */
bool on_message(shoal::ReceivedMessage &m)
{
	auto j = nlohmann::json::parse(m.data, nullptr, false);
	if (!j.is_object())
		bench::die("bumblebee sent something that is not JSON: %s", m.data.substr(0, 200).c_str());
	std::string op = j.value("op", "");
	if (op == "welcome")
		return false;
	std::string id = j.value("id", "");
	std::size_t i = flows.size();
	if (!id.empty() && id.find_first_not_of("0123456789") == std::string::npos)
		i = std::stoul(id);
	if (i >= flows.size())
		bench::die("unexpected message from bumblebee: %s", m.data.substr(0, 300).c_str());
	Flow &f = flows[i];
	if (op == "upgraded") {
		if (m.fds.size() != 1 || f.state == State::upgraded)
			bench::die("bad upgraded: %s", m.data.substr(0, 300).c_str());
		in_flight--;
		upgraded++;
		f.state = State::upgraded;
		f.kernel = m.fds[0].release();
		if (!hold) {
			/* Our end first: bumblebee sees EOF and resets its kernel socket; ours then goes with an RST too. */
			close_flow(f, true);
			f.state = State::closed;
		}
		return true;
	}
	if (op == "ended") {
		f.ended = true;
		ended++;
		if (f.state == State::syn_sent || f.state == State::ack_sent) {
			in_flight--;
			failed++;
			ended_before_upgrade++;
			note_error("ended:" + j.value("reason", "?"), m.data);
			f.state = State::failed;
			close_flow(f, true);
			return true;
		}
		if (hold && f.state == State::upgraded)
			note_error("ended_while_idle:" + j.value("reason", "?"), m.data);
		return false;
	}
	if (op == "error") {
		if (f.state == State::syn_sent || f.state == State::ack_sent) {
			in_flight--;
			failed++;
			refused++;
			f.state = State::failed;
			close_flow(f, true);
		}
		note_error(j.value("code", "?"), m.data);
		return true;
	}
	bench::die("unexpected op from bumblebee: %s", m.data.substr(0, 300).c_str());
}

/* Reads every queued control message; returns how many upgrades they answered. */
std::size_t read_control()
{
	std::size_t answered = 0;
	for (;;) {
		auto r = shoal::recv_message(ctl);
		if (!r) {
			if (r.error() == EAGAIN)
				return answered;
			bench::die("bumblebee connection: %s", std::strerror(r.error()));
		}
		if (r->error)
			bench::die("bumblebee message: %s", std::strerror(r->error));
		answered += on_message(*r);
	}
}

void set_ctl_events()
{
	epoll_event ev{};
	ev.events = EPOLLIN | (ctl_blocked ? static_cast<std::uint32_t>(EPOLLOUT) : 0u);
	ev.data.u64 = kControl;
	::epoll_ctl(ep, EPOLL_CTL_MOD, ctl, &ev);
}

/*
 * Runs the loop until done() or the deadline; `more` starts new flows while the window allows.
 * Returns false on timeout.
 */
template <typename Done, typename More>
bool run(bench::Clock::time_point deadline, Done done, More more)
{
	epoll_event events[512];
	more();
	set_ctl_events();
	while (!done()) {
		int n = ::epoll_wait(ep, events, 512, bench::ms_until(deadline));
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		if (bench::Clock::now() >= deadline && !done())
			return false;
		bool was_blocked = ctl_blocked;
		for (int k = 0; k < n; k++) {
			std::uint64_t i = events[k].data.u64;
			if (i == kControl) {
				if (events[k].events & EPOLLOUT)
					flush_pending();
				if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
					read_control();
			} else if (i < flows.size() && flows[i].ours >= 0) {
				on_flow_readable(i);
			}
		}
		more();
		if (was_blocked != ctl_blocked)
			set_ctl_events();
	}
	return true;
}

struct Mem {
	long rss_kib = 0;
};

Mem self_mem()
{
	Mem m;
	if (FILE *f = std::fopen("/proc/self/status", "r")) {
		char line[256];
		while (std::fgets(line, sizeof line, f))
			if (std::strncmp(line, "VmRSS:", 6) == 0)
				m.rss_kib = std::atol(line + 6);
		std::fclose(f);
	}
	return m;
}

std::string errors_json()
{
	nlohmann::json codes = error_codes;
	return "\"error_codes\":" + codes.dump() + ",\"first_error\":" + nlohmann::json(first_error.substr(0, 500)).dump();
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	std::string path = args.str("socket");
	std::size_t count = args.num("count", 20000);
	std::size_t window = args.num("window", 256);
	hold = args.flag("hold");
	timeout_ms_req = args.num("timeout-ms", 0);
	double timeout = static_cast<double>(args.num("timeout", 120));
	if (window == 0 || (!hold && count == 0))
		bench::die("--count and --window must be positive");
	bench::raise_nofile();
	::signal(SIGPIPE, SIG_IGN);
	server_ep = Endpoint{pk::Addr::v4(0xc6336401u), 80}; /* 198.51.100.1:80: never dialled, bumblebee terminates it */
	auto span = std::chrono::duration_cast<bench::Clock::duration>(std::chrono::duration<double>(timeout));

	ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench::die("epoll_create1: %s", std::strerror(errno));
	ctl = bench::connect_unix(path);
	if (!shoal::send_message(ctl, "{\"v\":1,\"op\":\"hello\",\"id\":\"hello\",\"owner\":\"bench-bumblebee-" +
					      std::to_string(::getpid()) + "\"}"))
		bench::die("hello: send failed");
	{
		pollfd pfd{ctl, POLLIN, 0};
		if (::poll(&pfd, 1, 10000) <= 0)
			bench::die("bumblebee did not answer hello");
		auto r = shoal::recv_message(ctl);
		if (!r || r->data.find("\"op\":\"welcome\"") == std::string::npos)
			bench::die("hello: unexpected answer %s", r ? r->data.c_str() : std::strerror(r.error()));
	}
	::fcntl(ctl, F_SETFL, ::fcntl(ctl, F_GETFL) | O_NONBLOCK);
	epoll_event cev{};
	cev.events = EPOLLIN;
	cev.data.u64 = kControl;
	::epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &cev);

	if (!hold) {
		flows.resize(count);
		theirs_of.assign(count, -1);
		std::size_t next = 0;
		auto more = [&] {
			while (in_flight < window && next < count)
				start_flow(next++);
		};
		double cpu0 = bench::cpu_seconds();
		auto t0 = bench::Clock::now();
		bool ok = run(t0 + span, [&] { return upgraded + failed >= count; }, more);
		double secs = bench::seconds_since(t0);
		double own_cpu = bench::cpu_seconds() - cpu0;
		/* Untimed: every flow's `ended`, so nothing outlives the run. */
		bool cleanup = run(bench::Clock::now() + std::chrono::seconds(30), [&] { return ended + refused >= sent; }, [] {});
		std::printf("{\"mode\":\"rate\",\"requests\":%zu,\"sent\":%zu,\"upgraded\":%zu,\"failed\":%zu,"
			    "\"ended_before_upgrade\":%zu,\"seconds\":%.6f,\"per_second\":%.1f,\"window\":%zu,"
			    "\"own_cpu_seconds\":%.6f,\"completed\":%s,\"ended\":%zu,\"cleanup_complete\":%s,%s}\n",
			    count, sent, upgraded, failed, ended_before_upgrade, secs,
			    secs > 0 ? static_cast<double>(upgraded) / secs : 0.0, window, own_cpu, ok ? "true" : "false",
			    ended, cleanup ? "true" : "false", errors_json().c_str());
		::close(ctl);
		return ok ? 0 : 1;
	}

	/* Hold mode: commands on stdin. */
	epoll_event sev{};
	sev.events = EPOLLIN;
	sev.data.u64 = kStdin;
	::epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
	bench::StdinCommands commands;
	bool quit = false;
	while (!quit) {
		epoll_event events[512];
		int n = ::epoll_wait(ep, events, 512, -1);
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		for (int k = 0; k < n; k++) {
			std::uint64_t i = events[k].data.u64;
			if (i == kControl) {
				read_control();
				continue;
			}
			if (i != kStdin) {
				if (i < flows.size() && flows[i].ours >= 0)
					on_flow_readable(i);
				continue;
			}
			if (!commands.read_more()) {
				quit = true;
				break;
			}
		}
		for (auto next = commands.next(); !quit && next; next = commands.next()) {
			const std::string &cmd = *next;
			if (cmd == "close") {
				quit = true;
			} else if (cmd.rfind("open ", 0) == 0) {
				std::size_t k = std::strtoul(cmd.c_str() + 5, nullptr, 10);
				std::size_t first = flows.size(), target = flows.size() + k;
				flows.resize(target);
				theirs_of.resize(target, -1);
				std::size_t next = first;
				std::size_t up0 = upgraded, fail0 = failed;
				auto more = [&] {
					while (in_flight < window && next < target)
						start_flow(next++);
				};
				::epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
				auto t0 = bench::Clock::now();
				bool ok = run(t0 + span, [&] { return upgraded + failed >= target; }, more);
				double secs = bench::seconds_since(t0);
				/* Let late packets (none are expected) settle before anyone measures. */
				run(bench::Clock::now() + std::chrono::milliseconds(200), [] { return false; }, [] {});
				::epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
				std::size_t idle = 0;
				for (const Flow &f : flows)
					idle += f.state == State::upgraded && !f.ended;
				std::printf("{\"event\":\"opened\",\"requested\":%zu,\"upgraded\":%zu,\"failed\":%zu,"
					    "\"idle_flows\":%zu,\"seconds\":%.3f,\"completed\":%s,\"own_rss_kib\":%ld,%s}\n",
					    k, upgraded - up0, failed - fail0, idle, secs, ok ? "true" : "false",
					    self_mem().rss_kib, errors_json().c_str());
				std::fflush(stdout);
			} else if (!cmd.empty()) {
				std::fprintf(stderr, "bench_bumblebee_upgrades: unknown command %s\n", cmd.c_str());
			}
		}
	}
	std::size_t idle = 0;
	for (const Flow &f : flows)
		idle += f.state == State::upgraded && !f.ended;
	for (Flow &f : flows) {
		close_flow(f, true);
		if (f.state == State::upgraded)
			f.state = State::closed;
	}
	::epoll_ctl(ep, EPOLL_CTL_DEL, 0, nullptr);
	bool cleanup = run(bench::Clock::now() + std::chrono::seconds(30), [&] { return ended + refused >= sent; }, [] {});
	std::printf("{\"event\":\"closed\",\"idle_at_close\":%zu,\"ended\":%zu,\"sent\":%zu,\"cleanup_complete\":%s,%s}\n",
		    idle, ended, sent, cleanup ? "true" : "false", errors_json().c_str());
	::close(ctl);
	return 0;
}
