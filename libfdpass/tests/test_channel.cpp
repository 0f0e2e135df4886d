// Channel on a real uv loop and real SOCK_SEQPACKET pairs: fds both ways, backpressure, closing, no leaks.
#include "fd_checks.h"
#include <catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/channel.h>
#include <shoal/fdpass/message.h>
#include <shoal/fdpass/unique_fd.h>

using shoal::Channel;
using shoal::ChannelLimits;
using shoal::OutMessage;
using shoal::ReceivedMessage;
using shoal::recv_message;
using shoal::send_message;
using shoal::UniqueFd;
using namespace std::chrono_literals;

using fdtest::is_cloexec;
using fdtest::is_open;
using fdtest::open_fds;

namespace {

std::pair<UniqueFd, UniqueFd> socket_pair()
{
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

std::pair<UniqueFd, UniqueFd> make_pipe()
{
	int p[2];
	REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
	return {UniqueFd(p[0]), UniqueFd(p[1])};
}

void pipe_write(int w, const std::string &s)
{
	REQUIRE(write(w, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
}

std::string pipe_read(int r)
{
	char buf[256];
	const ssize_t n = read(r, buf, sizeof(buf));
	if (n <= 0)
		return {};
	return std::string(buf, static_cast<std::size_t>(n));
}

OutMessage out(std::string data)
{
	OutMessage m;
	m.data = std::move(data);
	return m;
}

OutMessage out(std::string data, UniqueFd fd)
{
	OutMessage m;
	m.data = std::move(data);
	m.fds.push_back(std::move(fd));
	return m;
}

/*
 * libuv opens a process-wide descriptor or two the first time a loop is made, and keeps them:
 * make and close one loop before any test takes its "before" count.
 */
void warm_up_libuv()
{
	static const bool warmed = [] {
		uv_loop_t loop;
		REQUIRE(uv_loop_init(&loop) == 0);
		REQUIRE(uv_loop_close(&loop) == 0);
		return true;
	}();
	(void)warmed;
}

/* A real uv loop, run in bounded steps; finish() runs it to completion and closes it. */
class Loop {
public:
	Loop()
	{
		REQUIRE(uv_loop_init(&loop_) == 0);
		REQUIRE(uv_timer_init(&loop_, &tick_) == 0);
	}
	~Loop()
	{
		if (!closed_)
			finish();
	}
	Loop(const Loop &) = delete;
	Loop &operator=(const Loop &) = delete;

	uv_loop_t *get() { return &loop_; }

	/* Runs the loop until pred() holds or the time is up; returns pred(). */
	template <typename Pred>
	bool run_until(Pred pred, std::chrono::milliseconds limit = 3000ms)
	{
		/* A ticking timer so that UV_RUN_ONCE never blocks past the deadline. */
		uv_timer_start(&tick_, [](uv_timer_t *) {}, 2, 2);
		const auto deadline = std::chrono::steady_clock::now() + limit;
		while (!pred() && std::chrono::steady_clock::now() < deadline)
			uv_run(&loop_, UV_RUN_ONCE);
		uv_timer_stop(&tick_);
		return pred();
	}

	/* Runs the loop for a while when nothing is expected to happen. */
	void run_for(std::chrono::milliseconds d)
	{
		run_until([] { return false; }, d);
	}

	/* One non-blocking pass. */
	void step() { uv_run(&loop_, UV_RUN_NOWAIT); }

	/* Lets every handle finish closing and closes the loop; false if something is still open. */
	bool finish()
	{
		if (closed_)
			return true;
		if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&tick_)))
			uv_close(reinterpret_cast<uv_handle_t *>(&tick_), nullptr);
		for (int i = 0; i < 1000; ++i) {
			uv_run(&loop_, UV_RUN_NOWAIT);
			if (uv_loop_close(&loop_) == 0) {
				closed_ = true;
				return true;
			}
		}
		return false;
	}

private:
	uv_loop_t loop_{};
	uv_timer_t tick_{};
	bool closed_ = false;
};

std::unique_ptr<Channel> open_channel(Loop &loop, UniqueFd sock, ChannelLimits limits = {})
{
	auto ch = Channel::open(loop.get(), std::move(sock), limits);
	REQUIRE(ch);
	REQUIRE(*ch);
	return std::move(*ch);
}

/* Records what a channel's handlers see, in order. */
struct Recorder {
	std::vector<ReceivedMessage> messages;
	std::vector<std::string> events; /* "msg:<data>" and "close" in the order they happened */
	int closes = 0;
	int close_error = 0;
	std::deque<OutMessage> unsent;

	void start(Channel &ch)
	{
		ch.start([this](ReceivedMessage m) {
			events.push_back("msg:" + m.data);
			messages.push_back(std::move(m));
		},
			 [this](int error, std::deque<OutMessage> left) {
				 events.push_back("close");
				 ++closes;
				 close_error = error;
				 unsent = std::move(left);
			 });
	}
};

/* Sends 1 KiB messages on ch until the kernel is full and one message is queued. */
std::size_t fill_kernel(Channel &ch, std::size_t size = 1024)
{
	std::size_t sent = 0;
	while (ch.queued_messages() == 0) {
		REQUIRE(sent < 100000);
		auto r = ch.send(out(std::string(size, 'k')));
		REQUIRE(r);
		++sent;
	}
	return sent;
}

/* Reads everything queued on a raw socket; returns the messages' data. */
std::vector<std::string> drain(int sock)
{
	std::vector<std::string> got;
	for (;;) {
		auto m = recv_message(sock);
		if (!m)
			break; /* EAGAIN, or EPIPE/ECONNRESET once the channel has gone */
		got.push_back(std::move(m->data));
	}
	return got;
}

} // namespace

TEST_CASE("Channel::open makes the socket non-blocking; owns it; and closes it after the loop lets go", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	int raw = -1;
	{
		auto [a, b] = socket_pair();
		raw = a.get();
		REQUIRE((fcntl(raw, F_GETFL) & O_NONBLOCK) == 0);
		auto ch = open_channel(loop, std::move(a));
		CHECK(ch->fd() == raw);
		CHECK((fcntl(raw, F_GETFL) & O_NONBLOCK) != 0);
		CHECK(ch->is_open());
		CHECK_FALSE(ch->congested());
		CHECK(ch->queued_bytes() == 0);
		CHECK(ch->queued_fds() == 0);
		CHECK(ch->queued_messages() == 0);
		ch->close();
		CHECK_FALSE(ch->is_open());
		CHECK(ch->fd() == -1);
		/* Closing twice is harmless. */
		ch->close();
	}
	REQUIRE(loop.finish());
	CHECK_FALSE(is_open(raw));
	CHECK(open_fds() == before);
}

TEST_CASE("Channel::open fails cleanly on a bad descriptor or one that cannot be polled", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	const std::size_t with_loop = open_fds();
	{
		auto bad = Channel::open(loop.get(), UniqueFd());
		REQUIRE_FALSE(bad);
		CHECK(bad.error() == EBADF);

		/* epoll refuses regular files; the descriptor handed over is not leaked. */
		UniqueFd mem(memfd_create("channel-test", MFD_CLOEXEC));
		REQUIRE(mem.is_valid());
		auto file = Channel::open(loop.get(), std::move(mem));
		REQUIRE_FALSE(file);
		CHECK(file.error() != 0);
		CHECK(open_fds() == with_loop);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: messages with fds both ways between two channels", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, sb] = socket_pair();
		auto a = open_channel(loop, std::move(sa));
		auto b = open_channel(loop, std::move(sb));
		auto [r1, w1] = make_pipe();
		auto [r2, w2] = make_pipe();

		Recorder ra;
		ra.start(*a);
		std::vector<ReceivedMessage> at_b;
		b->start([&](ReceivedMessage m) {
			/* Reply from inside the handler, handing over our own fd. */
			auto r = b->send(out("pong", std::move(w2)));
			CHECK(r);
			at_b.push_back(std::move(m));
		},
			 [](int, std::deque<OutMessage>) { FAIL("b closed"); });

		const std::size_t with_both = open_fds();
		const int w1_raw = w1.get();
		REQUIRE(a->send(out("ping", std::move(w1))));
		/* Sent at once, and our copy closed now that the kernel holds one. */
		CHECK(a->queued_messages() == 0);
		CHECK_FALSE(is_open(w1_raw));
		CHECK(open_fds() == with_both - 1);

		REQUIRE(loop.run_until([&] { return !ra.messages.empty(); }));
		REQUIRE(at_b.size() == 1);
		CHECK(at_b[0].data == "ping");
		CHECK(at_b[0].error == 0);
		REQUIRE(at_b[0].fds.size() == 1);
		CHECK(is_cloexec(at_b[0].fds[0].get()));
		pipe_write(at_b[0].fds[0].get(), "through b");
		CHECK(pipe_read(r1.get()) == "through b");

		REQUIRE(ra.messages.size() == 1);
		CHECK(ra.messages[0].data == "pong");
		CHECK(ra.messages[0].error == 0);
		REQUIRE(ra.messages[0].fds.size() == 1);
		CHECK(is_cloexec(ra.messages[0].fds[0].get()));
		pipe_write(ra.messages[0].fds[0].get(), "through a");
		CHECK(pipe_read(r2.get()) == "through a");
		CHECK(ra.closes == 0);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: send goes out at once when the socket has room", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		/* Not even started: sending does not need the read side. */
		REQUIRE(ch->send(out("now")));
		CHECK(ch->queued_messages() == 0);
		auto m = recv_message(peer.get());
		REQUIRE(m);
		CHECK(m->data == "now");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: thousands of messages in order; both ways at once; with fds", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, sb] = socket_pair();
		auto a = open_channel(loop, std::move(sa));
		auto b = open_channel(loop, std::move(sb));
		Recorder ra, rb;
		ra.start(*a);
		rb.start(*b);
		auto [r, w] = make_pipe();
		constexpr int kCount = 2000;
		auto payload = [](char side, int i) {
			return std::string(1, side) + std::to_string(i) + ":" +
			       std::string(static_cast<std::size_t>(i * 37 % 200), static_cast<char>('a' + i % 26));
		};
		for (int i = 0; i < kCount; ++i) {
			for (auto *pair : {&a, &b}) {
				Channel &ch = **pair;
				const char side = pair == &a ? 'A' : 'B';
				OutMessage m = i % 100 == 0 ? out(payload(side, i), w.dup()) : out(payload(side, i));
				REQUIRE(ch.send(std::move(m)));
			}
		}
		/* The kernel cannot hold all of it: some waited in the queues. */
		CHECK(a->queued_messages() > 0);
		CHECK(b->queued_messages() > 0);

		REQUIRE(loop.run_until([&] {
			return ra.messages.size() == kCount && rb.messages.size() == kCount;
		}));
		for (int i = 0; i < kCount; ++i) {
			CHECK(rb.messages[i].data == payload('A', i));
			CHECK(ra.messages[i].data == payload('B', i));
			CHECK(rb.messages[i].fds.size() == (i % 100 == 0 ? 1u : 0u));
			CHECK(ra.messages[i].fds.size() == (i % 100 == 0 ? 1u : 0u));
			CHECK(rb.messages[i].error == 0);
		}
		CHECK(a->queued_messages() == 0);
		CHECK(a->queued_bytes() == 0);
		CHECK(a->queued_fds() == 0);
		CHECK(b->queued_messages() == 0);
		CHECK(ra.closes == 0);
		CHECK(rb.closes == 0);
		pipe_write(rb.messages[1900].fds[0].get(), "late fd");
		CHECK(pipe_read(r.get()) == "late fd");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: the peer closing calls the close handler once; with EPIPE; after its messages", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		const int fds[] = {w.get()};
		REQUIRE(send_message(peer.get(), "one"));
		REQUIRE(send_message(peer.get(), "two", fds));
		REQUIRE(send_message(peer.get(), "three"));
		peer.reset();

		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.close_error == EPIPE);
		CHECK(rec.unsent.empty());
		CHECK(rec.events == std::vector<std::string>{"msg:one", "msg:two", "msg:three", "close"});
		REQUIRE(rec.messages.size() == 3);
		CHECK(rec.messages[1].fds.size() == 1);
		CHECK_FALSE(ch->is_open());
		CHECK(ch->fd() == -1);

		/* Nothing more happens, however long the loop runs. */
		loop.run_for(20ms);
		CHECK(rec.closes == 1);
		CHECK(rec.events.size() == 4);

		/* Sending now is refused, and the message comes back whole. */
		auto refused = ch->send(out("too late", w.dup()));
		REQUIRE_FALSE(refused);
		CHECK(refused.error().error == EPIPE);
		CHECK(refused.error().message.data == "too late");
		REQUIRE(refused.error().message.fds.size() == 1);
		pipe_write(refused.error().message.fds[0].get(), "still mine");
		CHECK(pipe_read(r.get()) == "still mine");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: a send that finds the peer gone is refused; the close handler runs from the loop", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		peer.reset();
		const int raw = w.get();
		auto refused = ch->send(out("anyone?", std::move(w)));
		REQUIRE_FALSE(refused);
		CHECK(refused.error().error == EPIPE);
		REQUIRE(refused.error().message.fds.size() == 1);
		CHECK(refused.error().message.fds[0].get() == raw);
		CHECK(is_open(raw));
		/* Not from inside send(). */
		CHECK(rec.closes == 0);
		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.closes == 1);
		CHECK(rec.close_error == EPIPE);
		loop.run_for(10ms);
		CHECK(rec.closes == 1);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: the close handler gets the queued messages that never left; fds intact", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		fill_kernel(*ch);
		const std::size_t already = ch->queued_messages();
		for (int i = 0; i < 5; ++i)
			REQUIRE(ch->send(out("queued-" + std::to_string(i), w.dup())));
		const std::size_t queued = ch->queued_messages();
		CHECK(queued == already + 5);
		CHECK(ch->queued_fds() == 5);

		/* The peer reads what the kernel holds, then closes in an orderly way. */
		CHECK_FALSE(drain(peer.get()).empty());
		peer.reset();

		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.closes == 1);
		CHECK(rec.close_error == EPIPE);
		REQUIRE(rec.unsent.size() == queued);
		for (int i = 0; i < 5; ++i) {
			const OutMessage &m = rec.unsent[already + i];
			CHECK(m.data == "queued-" + std::to_string(i));
			REQUIRE(m.fds.size() == 1);
			CHECK(is_open(m.fds[0].get()));
			pipe_write(m.fds[0].get(), std::to_string(i));
			CHECK(pipe_read(r.get()) == std::to_string(i));
		}
		CHECK(ch->queued_messages() == 0);
		CHECK(ch->queued_fds() == 0);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: a peer that closes without reading what we sent ends the channel with its errno", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		REQUIRE(ch->send(out("never read")));
		REQUIRE(send_message(peer.get(), "last words"));
		/* Unread data in the peer's queue: the kernel resets our end (ECONNRESET). */
		peer.reset();
		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.closes == 1);
		INFO("close handler error: " << rec.close_error << " (" << std::strerror(rec.close_error) << ")");
		CHECK((rec.close_error == ECONNRESET || rec.close_error == EPIPE));
		CHECK_FALSE(ch->is_open());
		loop.run_for(10ms);
		CHECK(rec.closes == 1);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: a peer that stops reading fills the queue; congestion; ENOBUFS; then recovery", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		/* A small kernel buffer, so that the peer's reads free room a few messages at a time. */
		int tiny = 1;
		REQUIRE(setsockopt(sa.get(), SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny)) == 0);
		ChannelLimits limits;
		limits.queue_bytes = 64 * 1024;
		const std::size_t half = limits.queue_bytes / 2, quarter = limits.queue_bytes / 4;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);

		std::size_t sent = fill_kernel(*ch); /* the last one of these is queued */
		std::size_t seq = sent;
		CHECK(ch->queued_messages() == 1);
		CHECK(ch->queued_bytes() == 1024);
		CHECK_FALSE(ch->congested());

		/* Fill the queue to its bound, one KiB at a time. */
		for (;;) {
			const std::size_t queued_before = ch->queued_bytes();
			auto r = ch->send(out(std::string(1024, 'k')));
			if (!r) {
				CHECK(r.error().error == ENOBUFS);
				CHECK(queued_before + 1024 > limits.queue_bytes);
				break;
			}
			++seq;
			CHECK(ch->queued_bytes() == queued_before + 1024);
			CHECK(ch->queued_bytes() == ch->queued_messages() * 1024);
			CHECK(ch->queued_bytes() <= limits.queue_bytes);
			CHECK(ch->congested() == (ch->queued_bytes() > half));
			REQUIRE(ch->queued_messages() < 1000);
		}
		CHECK(ch->queued_bytes() == limits.queue_bytes);
		CHECK(ch->congested());
		const std::size_t full = ch->queued_messages();

		/* A refused message comes back whole, its fd open and usable. */
		auto [r, w] = make_pipe();
		const int raw = w.get();
		const std::size_t with_pipe = open_fds();
		auto refused = ch->send(out("no room", std::move(w)));
		REQUIRE_FALSE(refused);
		CHECK(refused.error().error == ENOBUFS);
		CHECK(refused.error().message.data == "no room");
		REQUIRE(refused.error().message.fds.size() == 1);
		CHECK(refused.error().message.fds[0].get() == raw);
		pipe_write(raw, "intact");
		CHECK(pipe_read(r.get()) == "intact");
		CHECK(open_fds() == with_pipe);
		CHECK(ch->queued_messages() == full);
		CHECK(ch->queued_fds() == 0);

		/* While congested the channel does not read: the peer is not served. */
		REQUIRE(send_message(peer.get(), "are you there?"));
		loop.run_for(30ms);
		CHECK(rec.messages.empty());
		CHECK(ch->queued_messages() == full);

		/* The peer drains bit by bit; congestion holds until the queue is below a quarter. */
		std::vector<std::string> at_peer;
		bool saw_hysteresis = false;
		for (int round = 0; round < 1000 && ch->queued_messages() > 0; ++round) {
			auto got = drain(peer.get());
			at_peer.insert(at_peer.end(), got.begin(), got.end());
			const std::size_t prev = ch->queued_messages();
			REQUIRE(loop.run_until([&] { return ch->queued_messages() < prev; }, 1000ms));
			const std::size_t q = ch->queued_bytes();
			if (q > quarter) {
				CHECK(ch->congested());
				if (q <= half)
					saw_hysteresis = true;
			}
			if (ch->congested())
				CHECK(rec.messages.empty());
		}
		CHECK(saw_hysteresis);
		CHECK(ch->queued_messages() == 0);
		CHECK(ch->queued_bytes() == 0);
		CHECK_FALSE(ch->congested());

		/* Reading resumed. */
		REQUIRE(loop.run_until([&] { return !rec.messages.empty(); }));
		CHECK(rec.messages[0].data == "are you there?");

		auto got = drain(peer.get());
		at_peer.insert(at_peer.end(), got.begin(), got.end());
		CHECK(at_peer.size() == seq);
		CHECK(rec.closes == 0);
		CHECK(ch->is_open());
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: the fd bound of the queue refuses with ENOBUFS and congests above half", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		ChannelLimits limits;
		limits.queue_fds = 4;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		fill_kernel(*ch);
		for (std::size_t i = 1; i <= 4; ++i) {
			REQUIRE(ch->send(out("fd", w.dup())));
			CHECK(ch->queued_fds() == i);
			CHECK(ch->congested() == (i > 2));
		}
		auto refused = ch->send(out("fifth", w.dup()));
		REQUIRE_FALSE(refused);
		CHECK(refused.error().error == ENOBUFS);
		REQUIRE(refused.error().message.fds.size() == 1);
		CHECK(is_open(refused.error().message.fds[0].get()));
		/* Bytes alone still fit. */
		CHECK(ch->send(out("no fds")));
		CHECK(ch->queued_fds() == 4);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: take_queue hands over the unsent messages and empties the queue", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		ChannelLimits limits;
		limits.queue_bytes = 16 * 1024;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		const std::size_t in_kernel = fill_kernel(*ch, 9000) - 1;
		for (int i = 0; i < 2; ++i)
			REQUIRE(ch->send(out("t" + std::to_string(i), w.dup())));
		CHECK(ch->queued_messages() == 3);
		CHECK(ch->congested());

		std::deque<OutMessage> taken = ch->take_queue();
		REQUIRE(taken.size() == 3);
		CHECK(taken[0].data == std::string(9000, 'k'));
		CHECK(taken[1].data == "t0");
		CHECK(taken[2].data == "t1");
		REQUIRE(taken[2].fds.size() == 1);
		pipe_write(taken[2].fds[0].get(), "taken");
		CHECK(pipe_read(r.get()) == "taken");
		CHECK(ch->queued_messages() == 0);
		CHECK(ch->queued_bytes() == 0);
		CHECK(ch->queued_fds() == 0);
		CHECK_FALSE(ch->congested());
		CHECK(ch->take_queue().empty());

		/* What was taken is not sent; the channel carries on. */
		CHECK(drain(peer.get()).size() == in_kernel);
		loop.run_for(20ms);
		CHECK(drain(peer.get()).empty());
		REQUIRE(ch->send(out("after")));
		auto m = recv_message(peer.get());
		REQUIRE(m);
		CHECK(m->data == "after");
		REQUIRE(send_message(peer.get(), "reading?"));
		REQUIRE(loop.run_until([&] { return !rec.messages.empty(); }));
		CHECK(rec.messages[0].data == "reading?");
		CHECK(ch->is_open());
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: per-message errors reach the handler and the channel stays open", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		ChannelLimits limits;
		limits.max_message = 100;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		const std::vector<int> five(5, w.get());
		const std::vector<int> lots(shoal::kKernelMaxFds, w.get());
		const int one[] = {w.get()};
		const std::size_t base = open_fds();
		REQUIRE(send_message(peer.get(), "five fds", five));
		REQUIRE(send_message(peer.get(), "kernel max", lots));
		REQUIRE(send_message(peer.get(), std::string(200, 'L')));
		REQUIRE(send_message(peer.get(), "fine", one));

		REQUIRE(loop.run_until([&] { return rec.messages.size() == 4; }));
		CHECK(rec.messages[0].error == ETOOMANYREFS);
		CHECK(rec.messages[0].fds.empty());
		CHECK(rec.messages[1].error == ETOOMANYREFS);
		CHECK(rec.messages[1].fds.empty());
		CHECK(rec.messages[2].error == EMSGSIZE);
		CHECK(rec.messages[2].data == std::string(100, 'L'));
		CHECK(rec.messages[3].error == 0);
		CHECK(rec.messages[3].data == "fine");
		REQUIRE(rec.messages[3].fds.size() == 1);
		/* Only the one good fd is open. */
		CHECK(open_fds() == base + 1);
		CHECK(ch->is_open());
		CHECK(rec.closes == 0);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: pause() stops delivery and resume() picks up where it left off", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		ch->pause();
		for (const char *s : {"p1", "p2", "p3"})
			REQUIRE(send_message(peer.get(), s));
		loop.run_for(30ms);
		CHECK(rec.messages.empty());
		/* Sending still works while paused. */
		REQUIRE(ch->send(out("out while paused")));
		auto m = recv_message(peer.get());
		REQUIRE(m);
		CHECK(m->data == "out while paused");

		ch->resume();
		REQUIRE(loop.run_until([&] { return rec.messages.size() == 3; }));
		CHECK(rec.events == std::vector<std::string>{"msg:p1", "msg:p2", "msg:p3"});
		/* Pause and resume again, idempotently. */
		ch->pause();
		ch->pause();
		REQUIRE(send_message(peer.get(), "p4"));
		loop.run_for(20ms);
		CHECK(rec.messages.size() == 3);
		ch->resume();
		ch->resume();
		REQUIRE(loop.run_until([&] { return rec.messages.size() == 4; }));
		CHECK(rec.messages[3].data == "p4");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: pause() from inside the handler stops the batch at once", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		std::vector<std::string> got;
		ch->start([&](ReceivedMessage m) {
			got.push_back(m.data);
			ch->pause();
		},
			  [](int, std::deque<OutMessage>) { FAIL("closed"); });
		for (const char *s : {"h1", "h2", "h3"})
			REQUIRE(send_message(peer.get(), s));
		REQUIRE(loop.run_until([&] { return !got.empty(); }));
		loop.run_for(20ms);
		CHECK(got == std::vector<std::string>{"h1"});
		ch->resume();
		REQUIRE(loop.run_until([&] { return got.size() == 2; }));
		loop.run_for(20ms);
		CHECK(got == std::vector<std::string>{"h1", "h2"});
		ch->resume();
		REQUIRE(loop.run_until([&] { return got.size() == 3; }));
		CHECK(got.back() == "h3");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: at most `batch` messages per wake-up", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		ChannelLimits limits;
		limits.batch = 2;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);
		for (int i = 0; i < 10; ++i)
			REQUIRE(send_message(peer.get(), "b" + std::to_string(i)));
		std::size_t seen = 0;
		for (int pass = 0; pass < 1000 && seen < 10; ++pass) {
			loop.step();
			const std::size_t now = rec.messages.size();
			CHECK(now - seen <= 2);
			seen = now;
		}
		REQUIRE(rec.messages.size() == 10);
		for (int i = 0; i < 10; ++i)
			CHECK(rec.messages[i].data == "b" + std::to_string(i));
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: close() from inside the message handler", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		auto [r, w] = make_pipe();
		int calls = 0, closes = 0;
		ch->start([&](ReceivedMessage) {
			++calls;
			ch->close();
			/* Everything is still safe to call on a closed channel. */
			CHECK_FALSE(ch->is_open());
			CHECK(ch->fd() == -1);
			auto refused = ch->send(out("after close"));
			CHECK_FALSE(refused);
			ch->pause();
			ch->resume();
		},
			  [&](int, std::deque<OutMessage>) { ++closes; });
		const int one[] = {w.get()};
		for (int i = 0; i < 5; ++i)
			REQUIRE(send_message(peer.get(), "m" + std::to_string(i), one));
		REQUIRE(loop.run_until([&] { return calls > 0; }));
		loop.run_for(20ms);
		CHECK(calls == 1);
		CHECK(closes == 0);
		auto refused = ch->send(out("later", w.dup()));
		REQUIRE_FALSE(refused);
		CHECK(refused.error().error == EPIPE);
		REQUIRE(refused.error().message.fds.size() == 1);
		CHECK(is_open(refused.error().message.fds[0].get()));
		CHECK(ch->take_queue().empty());
		/* The peer sees us gone once libuv has let go of the socket (reset: we left data unread). */
		auto end = recv_message(peer.get());
		REQUIRE_FALSE(end);
		CHECK((end.error() == EPIPE || end.error() == ECONNRESET));
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: a peer that does not read its replies stops being served", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		int tiny = 1;
		REQUIRE(setsockopt(sa.get(), SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny)) == 0);
		ChannelLimits limits;
		limits.queue_bytes = 8 * 1024;
		auto ch = open_channel(loop, std::move(sa), limits);
		int handled = 0, refusals = 0, closes = 0;
		/* Every request gets a 3 KiB reply; the peer sends ten and reads none of the replies. */
		ch->start([&](ReceivedMessage m) {
			++handled;
			if (!ch->send(out(m.data + std::string(3 * 1024 - m.data.size(), '.'))))
				++refusals;
		},
			  [&](int, std::deque<OutMessage>) { ++closes; });
		for (int i = 0; i < 10; ++i)
			REQUIRE(send_message(peer.get(), "req" + std::to_string(i)));

		REQUIRE(loop.run_until([&] { return ch->congested(); }));
		loop.run_for(30ms);
		const int served = handled;
		CHECK(served < 10);
		/* Reading stopped before the queue could overflow: no reply was refused. */
		CHECK(refusals == 0);
		CHECK(ch->queued_bytes() <= limits.queue_bytes);
		CHECK(ch->queued_bytes() > limits.queue_bytes / 2);

		/* Once the peer reads its replies, the rest of the requests are served, in order. */
		std::vector<std::string> replies;
		REQUIRE(loop.run_until([&] {
			auto got = drain(peer.get());
			replies.insert(replies.end(), got.begin(), got.end());
			return replies.size() == 10;
		}));
		CHECK(handled == 10);
		CHECK(refusals == 0);
		CHECK(closes == 0);
		for (int i = 0; i < 10; ++i)
			CHECK(replies[i].substr(0, 5) == "req" + std::to_string(i) + ".");
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: a peer that closes while we are paused is noticed after resume()", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		ch->pause();
		REQUIRE(send_message(peer.get(), "before the end"));
		peer.reset();
		loop.run_for(20ms);
		CHECK(rec.messages.empty());
		ch->resume();
		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.events == std::vector<std::string>{"msg:before the end", "close"});
		CHECK(rec.close_error == EPIPE);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: shutdown(SHUT_WR) by the peer ends the channel with EPIPE", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		REQUIRE(send_message(peer.get(), "last"));
		REQUIRE(shutdown(peer.get(), SHUT_WR) == 0);
		REQUIRE(loop.run_until([&] { return rec.closes > 0; }));
		CHECK(rec.events == std::vector<std::string>{"msg:last", "close"});
		CHECK(rec.close_error == EPIPE);
		/* The channel let go of its end: the peer sees the end too. */
		REQUIRE(loop.run_until([&] {
			auto m = recv_message(peer.get());
			return !m && m.error() != EAGAIN;
		}));
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: destroying the Channel from inside the message handler", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		auto [r, w] = make_pipe();
		int calls = 0;
		ch->start([&](ReceivedMessage m) {
			++calls;
			CHECK(m.fds.size() == 1);
			ch.reset();
			/* m (and its fd) still belongs to us here. */
			CHECK(m.data == "d0");
		},
			  [](int, std::deque<OutMessage>) { FAIL("closed"); });
		const int one[] = {w.get()};
		for (int i = 0; i < 5; ++i)
			REQUIRE(send_message(peer.get(), "d" + std::to_string(i), one));
		REQUIRE(loop.run_until([&] { return calls > 0; }));
		loop.run_for(20ms);
		CHECK(calls == 1);
		CHECK(ch == nullptr);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: destroying the Channel from inside the close handler", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		auto [r, w] = make_pipe();
		/* Something queued, so the close handler has unsent messages to drop too. */
		fill_kernel(*ch);
		REQUIRE(ch->send(out("queued", w.dup())));
		int closes = 0;
		std::size_t unsent = 0;
		ch->start([](ReceivedMessage) {},
			  [&](int error, std::deque<OutMessage> left) {
				  ++closes;
				  CHECK(error != 0);
				  unsent = left.size();
				  ch.reset();
			  });
		drain(peer.get());
		peer.reset();
		REQUIRE(loop.run_until([&] { return closes > 0; }));
		loop.run_for(20ms);
		CHECK(closes == 1);
		CHECK(unsent >= 1);
		CHECK(ch == nullptr);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: close() and destruction drop the queue; close its fds; and call no handler", "[channel]")
{
	warm_up_libuv();
	const bool destroy = GENERATE(false, true);
	INFO((destroy ? "destroyed" : "closed"));
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa));
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();
		fill_kernel(*ch);
		const std::size_t base = open_fds();
		for (int i = 0; i < 3; ++i)
			REQUIRE(ch->send(out("q", w.dup())));
		CHECK(open_fds() == base + 3);
		if (destroy)
			ch.reset();
		else
			ch->close();
		loop.run_for(20ms);
		/* The queued fds are closed; the pipe's write end is ours alone again. */
		CHECK(open_fds() <= base);
		w.reset();
		char c;
		CHECK(read(r.get(), &c, 1) == 0);
		CHECK(rec.closes == 0);
		CHECK(rec.messages.empty());
		if (!destroy) {
			CHECK(ch->queued_messages() == 0);
			CHECK(ch->queued_fds() == 0);
		}
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: send refuses what the kernel could never take; and the channel carries on", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		ChannelLimits limits;
		limits.queue_bytes = 16 * 1024 * 1024;
		auto ch = open_channel(loop, std::move(sa), limits);
		Recorder rec;
		rec.start(*ch);
		auto [r, w] = make_pipe();

		auto huge = ch->send(out(std::string(4 * 1024 * 1024, 'h'), w.dup()));
		REQUIRE_FALSE(huge);
		CHECK(huge.error().error == EMSGSIZE);
		CHECK(huge.error().message.data.size() == 4u * 1024 * 1024);
		CHECK(huge.error().message.fds.size() == 1);

		OutMessage many;
		many.data = "too many fds";
		for (std::size_t i = 0; i < shoal::kKernelMaxFds + 1; ++i)
			many.fds.push_back(w.dup());
		auto big = ch->send(std::move(many));
		REQUIRE_FALSE(big);
		CHECK(big.error().error == E2BIG);
		CHECK(big.error().message.fds.size() == shoal::kKernelMaxFds + 1);
		for (const UniqueFd &fd : big.error().message.fds)
			CHECK(is_open(fd.get()));

		CHECK(ch->is_open());
		REQUIRE(ch->send(out("ok")));
		auto m = recv_message(peer.get());
		REQUIRE(m);
		CHECK(m->data == "ok");
		loop.run_for(10ms);
		CHECK(rec.closes == 0);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}

TEST_CASE("Channel: an unsendable message behind a queue does not kill the channel", "[channel]")
{
	warm_up_libuv();
	const std::size_t before = open_fds();
	Loop loop;
	{
		auto [sa, peer] = socket_pair();
		auto ch = open_channel(loop, std::move(sa)); /* default limits: a 1 MiB queue */
		Recorder rec;
		rec.start(*ch);
		const std::size_t sent = fill_kernel(*ch);
		/* Larger than the socket's send buffer: the kernel will never take it. */
		const std::string huge(256 * 1024, 'H');
		auto r = ch->send(out(huge));
		const bool refused = !r;
		if (refused) {
			CHECK(r.error().error == EMSGSIZE);
		}
		REQUIRE(ch->send(out("after the huge one")));

		std::vector<std::string> at_peer;
		REQUIRE(loop.run_until([&] {
			auto got = drain(peer.get());
			at_peer.insert(at_peer.end(), got.begin(), got.end());
			return ch->queued_messages() == 0 || rec.closes > 0;
		}));
		auto got = drain(peer.get());
		at_peer.insert(at_peer.end(), got.begin(), got.end());
		INFO("send of the huge message " << (refused ? "was refused" : "was accepted"));
		INFO("close handler error " << rec.close_error);
		CHECK(rec.closes == 0);
		CHECK(ch->is_open());
		REQUIRE_FALSE(at_peer.empty());
		CHECK(at_peer.back().substr(0, 32) == "after the huge one");
		CHECK(at_peer.size() == sent + 1);
	}
	REQUIRE(loop.finish());
	CHECK(open_fds() == before);
}
