// MetricsHttpServer: a bounded, one-request-per-connection HTTP/1.1 server for GET /metrics.
#include <shoal/service/metrics.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace shoal::service {

namespace {

/* Accepts per wake-up, so a connection flood cannot starve the rest of the loop. */
constexpr int kAcceptBatch = 64;
/* After EMFILE and the like the listener stays readable; retrying at once would spin. */
constexpr std::uint64_t kAcceptBackoffMs = 100;
/* Bytes read and thrown away after answering, so closing does not reset the answer away. */
constexpr std::size_t kMaxDrain = 256 * 1024;

struct Conn;

} // namespace

struct MetricsHttpServer::State {
	uv_loop_t *loop = nullptr;
	uv_poll_t poll{};
	uv_timer_t backoff{};
	int fd = -1;
	Render render;
	MetricsHttpLimits limits;
	std::vector<Conn *> conns;
	int open_handles = 0;
};

namespace {

using State = MetricsHttpServer::State;

enum class Phase { Reading, Writing, Draining };

struct Conn {
	uv_poll_t poll{};
	uv_timer_t timer{};
	int fd = -1;
	State *owner = nullptr; /* null once the server let go of this connection */
	Phase phase = Phase::Reading;
	int events = 0;
	int open_handles = 0;
	bool closing = false;
	std::string in;
	std::string out;
	std::size_t sent = 0;
	std::size_t drained = 0;
};

void on_conn_handle_closed(uv_handle_t *h)
{
	auto *c = static_cast<Conn *>(h->data);
	if (--c->open_handles > 0)
		return;
	/* Only now has libuv forgotten the descriptor, so only now may its number be reused. */
	::close(c->fd);
	delete c;
}

void conn_close(Conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (State *s = c->owner) {
		auto it = std::find(s->conns.begin(), s->conns.end(), c);
		if (it != s->conns.end())
			s->conns.erase(it);
		c->owner = nullptr;
	}
	uv_close(reinterpret_cast<uv_handle_t *>(&c->poll), on_conn_handle_closed);
	uv_close(reinterpret_cast<uv_handle_t *>(&c->timer), on_conn_handle_closed);
}

void on_conn_event(uv_poll_t *h, int status, int events);

void want(Conn *c, int events)
{
	if (c->events == events)
		return;
	if (uv_poll_start(&c->poll, events, on_conn_event) < 0) {
		conn_close(c);
		return;
	}
	c->events = events;
}

void drain(Conn *c)
{
	char buf[4096];
	for (;;) {
		ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->drained += static_cast<std::size_t>(n);
		if (c->drained > kMaxDrain) {
			conn_close(c);
			return;
		}
	}
}

void write_out(Conn *c)
{
	while (c->sent < c->out.size()) {
		/* MSG_NOSIGNAL: a scraper that hangs up must not SIGPIPE the daemon. */
		ssize_t n = ::send(c->fd, c->out.data() + c->sent, c->out.size() - c->sent,
				   MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			want(c, UV_WRITABLE);
			return;
		}
		if (n < 0) {
			conn_close(c);
			return;
		}
		c->sent += static_cast<std::size_t>(n);
	}
	std::string().swap(c->out);
	/* Half-close and wait for the client's EOF: closing with its bytes unread would RST. */
	::shutdown(c->fd, SHUT_WR);
	c->phase = Phase::Draining;
	want(c, UV_READABLE);
	if (!c->closing)
		drain(c);
}

void respond(Conn *c, int status, std::string_view reason, std::string_view body,
	     bool head_only = false, std::string_view content_type = "text/plain; charset=utf-8",
	     std::string_view extra_headers = {})
{
	std::string &o = c->out;
	o.reserve(160 + (head_only ? 0 : body.size()));
	o += "HTTP/1.1 ";
	o += std::to_string(status);
	o += ' ';
	o += reason;
	o += "\r\nContent-Type: ";
	o += content_type;
	o += "\r\nContent-Length: ";
	o += std::to_string(body.size());
	o += "\r\nConnection: close\r\n";
	o += extra_headers;
	o += "\r\n";
	if (!head_only)
		o += body;
	std::string().swap(c->in);
	c->sent = 0;
	c->phase = Phase::Writing;
	write_out(c);
}

void handle_request(Conn *c, std::string_view head)
{
	std::string_view line = head.substr(0, head.find('\n'));
	if (!line.empty() && line.back() == '\r')
		line.remove_suffix(1);
	std::size_t sp1 = line.find(' ');
	std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
	if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
		respond(c, 400, "Bad Request", "bad request\n");
		return;
	}
	std::string_view method = line.substr(0, sp1);
	std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
	std::string_view version = line.substr(sp2 + 1);
	if (method.empty() || target.empty() || version.substr(0, 7) != "HTTP/1.") {
		respond(c, 400, "Bad Request", "bad request\n");
		return;
	}
	std::string_view path = target.substr(0, target.find('?'));
	if (path != "/metrics") {
		respond(c, 404, "Not Found", "not found: try /metrics\n");
		return;
	}
	bool head_only = method == "HEAD";
	if (method != "GET" && !head_only) {
		respond(c, 405, "Method Not Allowed", "method not allowed\n", false,
			"text/plain; charset=utf-8", "Allow: GET, HEAD\r\n");
		return;
	}
	std::string body;
	try {
		body = c->owner->render();
	} catch (const std::exception &e) {
		spdlog::warn("metrics: rendering failed: {}", e.what());
		if (!c->closing)
			respond(c, 500, "Internal Server Error", "rendering the metrics failed\n");
		return;
	} catch (...) {
		if (!c->closing)
			respond(c, 500, "Internal Server Error", "rendering the metrics failed\n");
		return;
	}
	/* render() may have closed the server, and with it this connection. */
	if (c->closing)
		return;
	respond(c, 200, "OK", body, head_only, "text/plain; version=0.0.4; charset=utf-8");
}

/* One past the blank line ending the head, or npos; searching only the bytes just added. */
std::size_t head_end(const std::string &in, std::size_t old_size)
{
	for (std::size_t i = old_size < 3 ? 0 : old_size - 3; i < in.size(); ++i) {
		if (in[i] != '\n')
			continue;
		if (i >= 1 && in[i - 1] == '\n')
			return i + 1;
		if (i >= 2 && in[i - 1] == '\r' && in[i - 2] == '\n')
			return i + 1;
	}
	return std::string::npos;
}

void read_request(Conn *c)
{
	std::size_t limit = c->owner->limits.max_request_head;
	char buf[4096];
	for (;;) {
		ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* Gone before finishing its request: nobody to answer. */
			conn_close(c);
			return;
		}
		std::size_t old = c->in.size();
		c->in.append(buf, static_cast<std::size_t>(n));
		std::size_t end = head_end(c->in, old);
		if (end != std::string::npos && end <= limit) {
			std::string head = c->in.substr(0, end);
			handle_request(c, head);
			return;
		}
		if (end != std::string::npos || c->in.size() > limit) {
			respond(c, 431, "Request Header Fields Too Large", "request head too large\n");
			return;
		}
	}
}

void on_conn_event(uv_poll_t *h, int status, int)
{
	auto *c = static_cast<Conn *>(h->data);
	try {
		if (c->closing)
			return;
		if (status < 0) {
			conn_close(c);
			return;
		}
		switch (c->phase) {
		case Phase::Reading:
			if (c->owner)
				read_request(c);
			else
				conn_close(c);
			break;
		case Phase::Writing:
			write_out(c);
			break;
		case Phase::Draining:
			drain(c);
			break;
		}
	} catch (...) {
		/* Only allocation can throw here; losing one scrape beats unwinding into libuv. */
		conn_close(c);
	}
}

void on_conn_timeout(uv_timer_t *t)
{
	conn_close(static_cast<Conn *>(t->data));
}

void start_conn(State *s, int fd)
{
	Conn *c = nullptr;
	try {
		c = new Conn;
	} catch (...) {
		::close(fd);
		return;
	}
	c->fd = fd;
	if (uv_poll_init(s->loop, &c->poll, fd) < 0) {
		::close(fd);
		delete c;
		return;
	}
	uv_timer_init(s->loop, &c->timer);
	c->poll.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	c->owner = s;
	try {
		s->conns.push_back(c);
	} catch (...) {
		c->owner = nullptr;
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_conn_timeout, s->limits.timeout_ms, 0);
	want(c, UV_READABLE);
}

void on_listener_event(uv_poll_t *h, int status, int);

void on_backoff(uv_timer_t *t)
{
	auto *s = static_cast<State *>(t->data);
	uv_poll_start(&s->poll, UV_READABLE, on_listener_event);
}

void pause_accepting(State *s)
{
	uv_poll_stop(&s->poll);
	uv_timer_start(&s->backoff, on_backoff, kAcceptBackoffMs, 0);
}

void accept_some(State *s, int status);

void on_listener_event(uv_poll_t *h, int status, int)
{
	auto *s = static_cast<State *>(h->data);
	try {
		accept_some(s, status);
	} catch (...) {
		/* Out of memory: stop for a moment rather than unwind into libuv. */
		pause_accepting(s);
	}
}

void accept_some(State *s, int status)
{
	if (status < 0) {
		spdlog::warn("metrics: listener: {}", uv_strerror(status));
		pause_accepting(s);
		return;
	}
	for (int i = 0; i < kAcceptBatch; ++i) {
		int fd = ::accept4(s->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;
			if (err == EINTR || err == ECONNABORTED || err == EPROTO)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK)
				return;
			spdlog::warn("metrics: accept: {}", std::strerror(err));
			pause_accepting(s);
			return;
		}
		if (s->conns.size() >= s->limits.max_connections) {
			::close(fd);
			continue;
		}
		start_conn(s, fd);
	}
}

void on_state_handle_closed(uv_handle_t *h)
{
	auto *s = static_cast<State *>(h->data);
	if (--s->open_handles > 0)
		return;
	::close(s->fd);
	delete s;
}

struct Address {
	sockaddr_storage ss{};
	socklen_t len = 0;
};

bool parse_address(const std::string &text, Address &out)
{
	std::string host;
	std::string_view port;
	int family;
	if (!text.empty() && text[0] == '[') {
		std::size_t close = text.find(']');
		if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
			return false;
		host = text.substr(1, close - 1);
		port = std::string_view(text).substr(close + 2);
		family = AF_INET6;
	} else {
		std::size_t colon = text.rfind(':');
		if (colon == std::string::npos || text.find(':') != colon)
			return false;
		host = text.substr(0, colon);
		port = std::string_view(text).substr(colon + 1);
		family = AF_INET;
	}
	std::uint16_t p = 0;
	auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
	if (port.empty() || ec != std::errc() || end != port.data() + port.size())
		return false;
	if (family == AF_INET6) {
		auto *sa = reinterpret_cast<sockaddr_in6 *>(&out.ss);
		sa->sin6_family = AF_INET6;
		sa->sin6_port = htons(p);
		if (inet_pton(AF_INET6, host.c_str(), &sa->sin6_addr) != 1)
			return false;
		out.len = sizeof(sockaddr_in6);
	} else {
		auto *sa = reinterpret_cast<sockaddr_in *>(&out.ss);
		sa->sin_family = AF_INET;
		sa->sin_port = htons(p);
		if (inet_pton(AF_INET, host.c_str(), &sa->sin_addr) != 1)
			return false;
		out.len = sizeof(sockaddr_in);
	}
	return true;
}

} // namespace

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::listen(uv_loop_t *loop,
									  const std::string &address,
									  Render render,
									  MetricsHttpLimits limits)
{
	Address addr;
	if (!loop || !render || !parse_address(address, addr))
		return errno_error(EINVAL);
	UniqueFd fd(::socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd.is_valid())
		return errno_error(errno);
	int one = 1;
	/* A restarted daemon must rebind while the old process's connections sit in TIME_WAIT. */
	if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		return errno_error(errno);
	if (::bind(fd.get(), reinterpret_cast<const sockaddr *>(&addr.ss), addr.len) < 0)
		return errno_error(errno);
	if (::listen(fd.get(), 128) < 0)
		return errno_error(errno);
	return adopt(loop, std::move(fd), std::move(render), limits);
}

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::adopt(uv_loop_t *loop,
									 UniqueFd listener,
									 Render render,
									 MetricsHttpLimits limits)
{
	if (!loop || !render || !listener.is_valid() || limits.max_connections == 0)
		return errno_error(EINVAL);
	int type = 0, accepting = 0;
	socklen_t len = sizeof type;
	if (::getsockopt(listener.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return errno_error(errno);
	len = sizeof accepting;
	if (::getsockopt(listener.get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
		return errno_error(errno);
	if (type != SOCK_STREAM || !accepting)
		return errno_error(EINVAL);
	int fl = ::fcntl(listener.get(), F_GETFL);
	if (fl < 0 || ::fcntl(listener.get(), F_SETFL, fl | O_NONBLOCK) < 0)
		return errno_error(errno);
	int fdfl = ::fcntl(listener.get(), F_GETFD);
	if (fdfl < 0 || ::fcntl(listener.get(), F_SETFD, fdfl | FD_CLOEXEC) < 0)
		return errno_error(errno);

	auto *s = new State;
	s->loop = loop;
	s->render = std::move(render);
	s->limits = limits;
	int rc = uv_poll_init(loop, &s->poll, listener.get());
	if (rc < 0) {
		delete s;
		return errno_error(-rc);
	}
	s->fd = listener.release();
	uv_timer_init(loop, &s->backoff);
	s->poll.data = s;
	s->backoff.data = s;
	s->open_handles = 2;
	std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(s));
	rc = uv_poll_start(&s->poll, UV_READABLE, on_listener_event);
	if (rc < 0)
		return errno_error(-rc); /* the server's destructor closes the handles and fd */
	return server;
}

MetricsHttpServer::~MetricsHttpServer()
{
	close();
}

void MetricsHttpServer::close()
{
	State *s = std::exchange(state_, nullptr);
	if (!s)
		return;
	std::vector<Conn *> conns;
	conns.swap(s->conns);
	for (Conn *c : conns) {
		c->owner = nullptr;
		conn_close(c);
	}
	uv_close(reinterpret_cast<uv_handle_t *>(&s->poll), on_state_handle_closed);
	uv_close(reinterpret_cast<uv_handle_t *>(&s->backoff), on_state_handle_closed);
}

int MetricsHttpServer::fd() const
{
	return state_ ? state_->fd : -1;
}

std::uint16_t MetricsHttpServer::port() const
{
	if (!state_)
		return 0;
	sockaddr_storage ss{};
	socklen_t len = sizeof ss;
	if (::getsockname(state_->fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(reinterpret_cast<const sockaddr_in *>(&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(reinterpret_cast<const sockaddr_in6 *>(&ss)->sin6_port);
	return 0;
}

std::size_t MetricsHttpServer::connections() const
{
	return state_ ? state_->conns.size() : 0;
}

} // namespace shoal::service
