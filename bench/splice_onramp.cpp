// bench_splice_onramp: the benchmark's own minimal TCP on-ramp to splicer: accept, connect upstream, hand both sockets over.
//
// Deliberately not shoal-proxy: the benchmark measures splicer, so its on-ramp does the least a
// proxy must: accept a client, connect to the upstream, send `splice` with fds [client, upstream]
// (pipelined, at most --window unanswered, below splicer's limits.max_inflight), close its own
// copies once splicer has said `accepted`, and close the sockets `done` hands back. It never
// touches the payload, so all relaying work (and CPU) is splicer's.
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/un.h>

#include <csignal>
#include <deque>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <shoal/fdpass/message.h>

#include "common.h"

namespace {

const char *kUsage =
	"Usage: bench_splice_onramp --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --splicer SOCKET\n"
	"                           [--window N] [--owner NAME]\n"
	"Hands every accepted connection and its upstream connection to splicer.\n"
	"Prints \"ready\" on stdout once listening; counters on stderr at SIGTERM.\n";

enum Kind { kListener, kSplicer, kSignal, kConnecting };

struct Tag {
	Kind kind;
	int client = -1;
	int upstream = -1;
};

struct Counters {
	std::uint64_t accepted_tcp = 0, upstream_failed = 0, spliced = 0, refused = 0, done = 0;
} counters;

int ep = -1;
int splicer = -1;
bool splicer_wants_out = false;
std::deque<std::pair<int, int>> queue; /* connected pairs not yet sent */
std::unordered_map<std::string, std::pair<int, int>> in_flight;
std::uint64_t next_id = 1;
std::size_t window = 32;

void watch_splicer_out(bool on)
{
	if (on == splicer_wants_out)
		return;
	splicer_wants_out = on;
	static Tag tag{kSplicer};
	epoll_event ev{};
	ev.events = EPOLLIN | (on ? std::uint32_t{EPOLLOUT} : 0u);
	ev.data.ptr = &tag;
	::epoll_ctl(ep, EPOLL_CTL_MOD, splicer, &ev);
}

void send_queued()
{
	while (!queue.empty() && in_flight.size() < window) {
		auto [a, b] = queue.front();
		std::string id = std::to_string(next_id);
		/* Metadata as a proxy would attach it: its own connection number, returned in `done`. */
		std::string msg = "{\"v\":1,\"op\":\"splice\",\"id\":\"" + id + "\",\"metadata\":{\"conn\":" + id + "}}";
		int fds[2] = {a, b};
		auto r = shoal::send_message(splicer, msg, fds);
		if (!r) {
			if (r.error() == EAGAIN) {
				watch_splicer_out(true);
				return;
			}
			bench::die("bench_splice_onramp: sending to splicer: %s", std::strerror(r.error()));
		}
		queue.pop_front();
		next_id++;
		in_flight.emplace(std::move(id), std::make_pair(a, b));
	}
	watch_splicer_out(false);
}

void read_splicer()
{
	for (int budget = 0; budget < 256; budget++) {
		auto r = shoal::recv_message(splicer);
		if (!r) {
			if (r.error() == EAGAIN)
				return;
			bench::die("bench_splice_onramp: splicer connection: %s", std::strerror(r.error()));
		}
		auto j = nlohmann::json::parse(r->data, nullptr, false);
		if (!j.is_object())
			bench::die("bench_splice_onramp: splicer sent something that is not JSON: %s", r->data.c_str());
		std::string op = j.value("op", "");
		if (op == "done") {
			counters.done++; /* the returned sockets close with r's fds */
			continue;
		}
		if (op == "welcome")
			continue;
		std::string id = j["id"].is_string() ? j["id"].get<std::string>() : "";
		auto it = in_flight.find(id);
		if (it == in_flight.end()) {
			std::fprintf(stderr, "bench_splice_onramp: unexpected message: %s\n", r->data.c_str());
			continue;
		}
		auto [a, b] = it->second;
		in_flight.erase(it);
		if (op == "accepted") {
			/* splicer holds its own duplicates now; ours are mere references. */
			counters.spliced++;
			::close(a);
			::close(b);
		} else {
			if (counters.refused++ < 5)
				std::fprintf(stderr, "bench_splice_onramp: splice refused: %s\n", r->data.c_str());
			bench::close_abort(a);
			bench::close_abort(b);
		}
	}
}

int connect_splicer(const std::string &path, const std::string &owner)
{
	int fd = bench::connect_unix(path);
	::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
	std::string hello = "{\"v\":1,\"op\":\"hello\",\"id\":\"hello\",\"owner\":\"" + owner + "\"}";
	if (auto r = shoal::send_message(fd, hello); !r)
		bench::die("hello: %s", std::strerror(r.error()));
	return fd;
}

} // namespace

int main(int argc, char **argv)
{
	bench::Args args(argc, argv, kUsage);
	sockaddr_in listen_addr = bench::parse_endpoint(args.str("listen"));
	sockaddr_in upstream = bench::parse_endpoint(args.str("upstream"));
	window = args.num("window", 32);
	bench::raise_nofile();
	::signal(SIGPIPE, SIG_IGN);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	::sigprocmask(SIG_BLOCK, &mask, nullptr);
	int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	ep = ::epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || sfd < 0)
		bench::die("epoll/signalfd: %s", std::strerror(errno));
	splicer = connect_splicer(args.str("splicer"), args.str("owner", "bench-onramp"));
	int lfd = bench::tcp_listen(listen_addr);

	Tag listener_tag{kListener}, splicer_tag{kSplicer}, signal_tag{kSignal};
	epoll_event ev{};
	ev.events = EPOLLIN;
	ev.data.ptr = &listener_tag;
	::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &splicer_tag;
	::epoll_ctl(ep, EPOLL_CTL_ADD, splicer, &ev);
	ev.data.ptr = &signal_tag;
	::epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	std::printf("ready\n");
	std::fflush(stdout);

	bool accept_paused = false;
	bench::Clock::time_point resume_at{};
	epoll_event events[512];
	for (;;) {
		int n = ::epoll_wait(ep, events, 512, accept_paused ? bench::ms_until(resume_at) : -1);
		if (n < 0 && errno != EINTR)
			bench::die("epoll_wait: %s", std::strerror(errno));
		if (accept_paused && bench::Clock::now() >= resume_at) {
			accept_paused = false;
			ev.events = EPOLLIN;
			ev.data.ptr = &listener_tag;
			::epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &ev);
		}
		for (int k = 0; k < n; k++) {
			auto *tag = static_cast<Tag *>(events[k].data.ptr);
			switch (tag->kind) {
			case kSignal:
				std::fprintf(stderr,
					     "{\"accepted_tcp\":%llu,\"upstream_failed\":%llu,\"spliced\":%llu,"
					     "\"refused\":%llu,\"done\":%llu}\n",
					     static_cast<unsigned long long>(counters.accepted_tcp),
					     static_cast<unsigned long long>(counters.upstream_failed),
					     static_cast<unsigned long long>(counters.spliced),
					     static_cast<unsigned long long>(counters.refused),
					     static_cast<unsigned long long>(counters.done));
				return 0;
			case kSplicer:
				if (events[k].events & EPOLLIN)
					read_splicer();
				else if (events[k].events & (EPOLLERR | EPOLLHUP))
					bench::die("bench_splice_onramp: splicer hung up");
				send_queued();
				break;
			case kListener:
				for (int a = 0; a < 64; a++) {
					int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (cfd < 0) {
						if (errno == EMFILE || errno == ENFILE) {
							std::fprintf(stderr, "bench_splice_onramp: accept: %s\n", std::strerror(errno));
							accept_paused = true;
							resume_at = bench::Clock::now() + std::chrono::milliseconds(100);
							ev.events = 0;
							ev.data.ptr = &listener_tag;
							::epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &ev);
						}
						break;
					}
					counters.accepted_tcp++;
					bench::set_nodelay(cfd);
					int ufd = bench::tcp_connect_nb(upstream);
					if (ufd < 0) {
						counters.upstream_failed++;
						bench::close_abort(cfd);
						continue;
					}
					auto *t = new Tag{kConnecting, cfd, ufd};
					epoll_event cev{};
					cev.events = EPOLLOUT;
					cev.data.ptr = t;
					::epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &cev);
				}
				break;
			case kConnecting: {
				::epoll_ctl(ep, EPOLL_CTL_DEL, tag->upstream, nullptr);
				if (bench::socket_error(tag->upstream) != 0) {
					counters.upstream_failed++;
					bench::close_abort(tag->client);
					bench::close_abort(tag->upstream);
				} else {
					queue.emplace_back(tag->client, tag->upstream);
				}
				delete tag;
				send_queued();
				break;
			}
			}
		}
	}
}
