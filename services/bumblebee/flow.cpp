// Flow helpers: the self-freeing libuv poll, state names and the wire form of a flow.
#include "flow.h"

namespace shoal::bumblebee {

const char *to_string(FlowState s)
{
	switch (s) {
	case FlowState::first_packet:
		return "first_packet";
	case FlowState::confirm:
		return "confirm";
	case FlowState::handshake:
		return "handshake";
	case FlowState::upgraded:
		return "upgraded";
	}
	return "unknown";
}

bool Poll::start(uv_loop_t *loop, int fd, void *data, uv_poll_cb cb)
{
	close();
	auto *h = new uv_poll_t;
	if (uv_poll_init(loop, h, fd) != 0) {
		delete h;
		return false;
	}
	h->data = data;
	handle_ = h;
	cb_ = cb;
	if (uv_poll_start(h, UV_READABLE, cb) != 0) {
		close();
		return false;
	}
	return true;
}

void Poll::pause()
{
	if (handle_)
		uv_poll_stop(handle_);
}

void Poll::resume()
{
	if (handle_)
		uv_poll_start(handle_, UV_READABLE, cb_);
}

void Poll::close()
{
	if (!handle_)
		return;
	/* libuv stops watching the fd here; the fd may be closed right after, the handle is freed later. */
	uv_close(reinterpret_cast<uv_handle_t *>(handle_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
	handle_ = nullptr;
}

nlohmann::json Flow::flow_json() const
{
	return {{"protocol", proto::to_string(protocol)}, {"src", client_ep.to_string()}, {"dst", server_ep.to_string()}};
}

} // namespace shoal::bumblebee
