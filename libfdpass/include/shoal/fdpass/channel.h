// Channel: one SOCK_SEQPACKET connection driven by a libuv loop, with a bounded outgoing queue.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/expected.h>
#include <shoal/fdpass/message.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal {

struct ChannelLimits {
	std::size_t max_message = kProtocolMaxMessage; /* larger datagrams arrive with EMSGSIZE */
	std::size_t max_fds = kProtocolMaxFds;         /* more arrive with ETOOMANYREFS, all closed */
	/*
	 * The outgoing queue's bound. send() refuses a message that would take a non-empty queue past it;
	 * reading stops while the queue holds more than half of it (a peer that does not read its
	 * replies stops being served instead of growing our memory) and resumes below a quarter.
	 */
	std::size_t queue_bytes = 1024 * 1024;
	std::size_t queue_fds = 256;
	/* Datagrams handled per wake-up before yielding to the rest of the loop. */
	unsigned batch = 32;
};

struct OutMessage {
	std::string data;
	std::vector<UniqueFd> fds; /* owned until sent; closed once the kernel holds them */
};

/* A message send() could not take: handed back whole, so its descriptors are not lost. */
struct Refused {
	int error;          /* ENOBUFS: queue full; EPIPE: channel closed or peer gone; EMSGSIZE: larger than
			       the socket can ever send (SO_SNDBUF); E2BIG: more than kKernelMaxFds fds */
	OutMessage message;
};

class Channel {
public:
	/* Called for every datagram; ReceivedMessage::error tells of per-message problems. */
	using MessageHandler = std::function<void(ReceivedMessage)>;
	/*
	 * Called once when the connection ends by itself: error is EPIPE for an orderly close by
	 * the peer, else the socket's errno. unsent holds the queued messages that never left.
	 * Not called for close() or destruction.
	 */
	using CloseHandler = std::function<void(int error, std::deque<OutMessage> unsent)>;

	/* The socket is made non-blocking; the channel owns it from here. */
	static Result<std::unique_ptr<Channel>> open(uv_loop_t *loop, UniqueFd sock,
						     ChannelLimits limits = {});
	~Channel();
	Channel(const Channel &) = delete;
	Channel &operator=(const Channel &) = delete;

	/* Handlers may call send(), pause(), close() or destroy the channel. */
	void start(MessageHandler on_message, CloseHandler on_close);

	/* Stops delivering messages (for example while a handoff is in progress). */
	void pause();
	void resume();

	/* Sends now if possible, else queues. Refused messages come back untouched. */
	Expected<void, Refused> send(OutMessage message);

	/* Stops polling and drops the queue; the socket is closed once libuv has let go of it. */
	void close();

	/* Takes the queued, unsent messages out (to hand them to another process). */
	std::deque<OutMessage> take_queue();

	bool is_open() const;
	bool congested() const;
	std::size_t queued_bytes() const;
	std::size_t queued_fds() const;
	std::size_t queued_messages() const;
	int fd() const; /* borrowed; -1 once closed */

	struct Impl; /* opaque; outlives the Channel until libuv has released the socket */

private:
	explicit Channel(Impl *impl);
	Impl *impl_;
};

} // namespace shoal
