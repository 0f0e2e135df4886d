// Tests for the Prometheus writer and the /metrics HTTP server, with real TCP clients.
#include <catch.hpp>

#include <shoal/service/metrics.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace shoal::service;
using shoal::UniqueFd;

namespace {

bool contains(const std::string &haystack, const std::string &needle)
{
	return haystack.find(needle) != std::string::npos;
}

std::size_t count_open_fds()
{
	std::size_t n = 0;
	DIR *d = ::opendir("/proc/self/fd");
	REQUIRE(d);
	while (dirent *e = ::readdir(d))
		if (e->d_name[0] != '.')
			++n;
	::closedir(d);
	return n;
}

/* A libuv loop that must end with every handle closed. */
class Loop {
public:
	Loop() { REQUIRE(uv_loop_init(&loop_) == 0); }
	~Loop()
	{
		uv_run(&loop_, UV_RUN_DEFAULT);
		int rc = uv_loop_close(&loop_);
		CHECK(rc == 0);
	}
	uv_loop_t *get() { return &loop_; }
	/* Runs the loop until client() returns on its own thread. */
	void run_with(const std::function<void()> &client)
	{
		uv_async_t done;
		REQUIRE(uv_async_init(&loop_, &done, [](uv_async_t *a) { uv_stop(a->loop); }) == 0);
		std::thread t([&] {
			client();
			uv_async_send(&done);
		});
		uv_run(&loop_, UV_RUN_DEFAULT);
		t.join();
		uv_close(reinterpret_cast<uv_handle_t *>(&done), nullptr);
		uv_run(&loop_, UV_RUN_NOWAIT);
	}

private:
	uv_loop_t loop_;
};

/* A blocking client socket connected to 127.0.0.1:port; -1 on failure. */
int connect_to(std::uint16_t port, int family = AF_INET)
{
	int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	timeval tv{10, 0};
	::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int rc;
	if (family == AF_INET6) {
		sockaddr_in6 sa{};
		sa.sin6_family = AF_INET6;
		sa.sin6_port = htons(port);
		sa.sin6_addr = in6addr_loopback;
		rc = ::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
	} else {
		sockaddr_in sa{};
		sa.sin_family = AF_INET;
		sa.sin_port = htons(port);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		rc = ::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
	}
	if (rc < 0) {
		::close(fd);
		return -1;
	}
	return fd;
}

bool send_all(int fd, const std::string &data)
{
	std::size_t off = 0;
	while (off < data.size()) {
		ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		off += static_cast<std::size_t>(n);
	}
	return true;
}

/* Everything until EOF; "ERROR: ..." when the read fails instead. */
std::string read_all(int fd)
{
	std::string out;
	char buf[65536];
	for (;;) {
		ssize_t n = ::recv(fd, buf, sizeof buf, 0);
		if (n == 0)
			return out;
		if (n < 0)
			return out + "ERROR: " + std::strerror(errno);
		out.append(buf, static_cast<std::size_t>(n));
	}
}

/* One request on a fresh connection; the whole response. Safe on any thread. */
std::string http(std::uint16_t port, const std::string &request, int family = AF_INET)
{
	int fd = connect_to(port, family);
	if (fd < 0)
		return std::string("ERROR: connect: ") + std::strerror(errno);
	std::string response = send_all(fd, request) ? read_all(fd) : "ERROR: send";
	::close(fd);
	return response;
}

std::string get(std::uint16_t port, const std::string &path = "/metrics")
{
	return http(port, "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

std::string body_of(const std::string &response)
{
	std::size_t at = response.find("\r\n\r\n");
	return at == std::string::npos ? std::string() : response.substr(at + 4);
}

std::string status_of(const std::string &response)
{
	return response.substr(0, response.find("\r\n"));
}

std::unique_ptr<MetricsHttpServer> serve(uv_loop_t *loop, MetricsHttpServer::Render render,
					 MetricsHttpLimits limits = {})
{
	auto server = MetricsHttpServer::listen(loop, "127.0.0.1:0", std::move(render), limits);
	REQUIRE(server.has_value());
	REQUIRE((*server)->port() != 0);
	return std::move(*server);
}

} // namespace

TEST_CASE("the writer groups families and prints HELP and TYPE once", "[metrics]")
{
	PrometheusWriter w;
	const PrometheusWriter::Labels splice{{"op", "splice"}};
	w.counter("shoal_requests_total", "Requests handled.", 3, splice);
	w.gauge("shoal_tasks", "Tasks running.", 2);
	w.counter("shoal_requests_total", "ignored", 4, {{"op", "cancel"}, {"result", "ok"}});
	std::string text = w.take();
	CHECK(text == "# HELP shoal_requests_total Requests handled.\n"
		      "# TYPE shoal_requests_total counter\n"
		      "shoal_requests_total{op=\"splice\"} 3\n"
		      "shoal_requests_total{op=\"cancel\",result=\"ok\"} 4\n"
		      "# HELP shoal_tasks Tasks running.\n"
		      "# TYPE shoal_tasks gauge\n"
		      "shoal_tasks 2\n");
	CHECK(w.take().empty());
}

TEST_CASE("the writer escapes label values and help text", "[metrics]")
{
	PrometheusWriter w;
	w.gauge("g", "back\\slash and\nnewline \"quotes\" stay", 1,
		{{"v", "a\\b\"c\nd"}, {"bad-name", "x"}});
	w.gauge("9bad name", "h", 1);
	std::string text = w.take();
	CHECK(contains(text, "# HELP g back\\\\slash and\\nnewline \"quotes\" stay\n"));
	CHECK(contains(text, "g{v=\"a\\\\b\\\"c\\nd\",bad_name=\"x\"} 1\n"));
	CHECK(contains(text, "# TYPE _bad_name gauge\n_bad_name 1\n"));
}

TEST_CASE("metric values: integers without exponent, special values by name", "[metrics]")
{
	CHECK(format_metric_value(0) == "0");
	CHECK(format_metric_value(-0.0) == "0");
	CHECK(format_metric_value(42) == "42");
	CHECK(format_metric_value(-7) == "-7");
	CHECK(format_metric_value(1e15) == "1000000000000000");
	CHECK(format_metric_value(18446744073709551616.0) == "18446744073709551616");
	CHECK(format_metric_value(0.5) == "0.5");
	CHECK(format_metric_value(0.1) == "0.1");
	CHECK(format_metric_value(1.5e-9) == "1.5e-09");
	CHECK(format_metric_value(1e300) == "1e+300");
	CHECK(format_metric_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
	CHECK(format_metric_value(std::numeric_limits<double>::infinity()) == "+Inf");
	CHECK(format_metric_value(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("GET /metrics answers 200 with the rendered body, then closes", "[metrics][http]")
{
	Loop loop;
	int renders = 0;
	auto server = serve(loop.get(), [&] {
		++renders;
		PrometheusWriter w;
		w.counter("shoal_scrapes_total", "Scrapes.", renders);
		return w.take();
	});
	int flags = ::fcntl(server->fd(), F_GETFD);
	CHECK((flags & FD_CLOEXEC) != 0);

	std::string r1, r2, head, query, lf;
	loop.run_with([&] {
		r1 = get(server->port());
		r2 = get(server->port());
		head = http(server->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
		query = get(server->port(), "/metrics?name[]=x");
		lf = http(server->port(), "GET /metrics HTTP/1.0\n\n");
	});
	std::string body = "# HELP shoal_scrapes_total Scrapes.\n"
			   "# TYPE shoal_scrapes_total counter\n"
			   "shoal_scrapes_total 1\n";
	CHECK(status_of(r1) == "HTTP/1.1 200 OK");
	CHECK(contains(r1, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	CHECK(contains(r1, "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"));
	CHECK(contains(r1, "\r\nConnection: close\r\n"));
	CHECK(body_of(r1) == body);
	CHECK(contains(body_of(r2), "shoal_scrapes_total 2\n"));
	CHECK(status_of(head) == "HTTP/1.1 200 OK");
	CHECK(contains(head, "Content-Length: "));
	CHECK(body_of(head).empty());
	CHECK(status_of(query) == "HTTP/1.1 200 OK");
	CHECK(status_of(lf) == "HTTP/1.1 200 OK");
	CHECK(renders == 5);
}

TEST_CASE("wrong paths, methods and requests get 404, 405 and 400", "[metrics][http]")
{
	Loop loop;
	auto server = serve(loop.get(), [] { return std::string("x 1\n"); });
	std::string not_found, root, post, del, garbage, no_version, http2;
	loop.run_with([&] {
		not_found = get(server->port(), "/metric");
		root = get(server->port(), "/");
		post = http(server->port(),
			    "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
		del = http(server->port(), "DELETE /metrics HTTP/1.1\r\n\r\n");
		garbage = http(server->port(), "HELLO\r\n\r\n");
		no_version = http(server->port(), "GET /metrics\r\n\r\n");
		http2 = http(server->port(), "GET /metrics HTTP/2.0\r\n\r\n");
	});
	CHECK(status_of(not_found) == "HTTP/1.1 404 Not Found");
	CHECK(contains(not_found, "Connection: close\r\n"));
	CHECK(status_of(root) == "HTTP/1.1 404 Not Found");
	CHECK(status_of(post) == "HTTP/1.1 405 Method Not Allowed");
	CHECK(contains(post, "\r\nAllow: GET, HEAD\r\n"));
	CHECK(status_of(del) == "HTTP/1.1 405 Method Not Allowed");
	CHECK(status_of(garbage) == "HTTP/1.1 400 Bad Request");
	CHECK(status_of(no_version) == "HTTP/1.1 400 Bad Request");
	CHECK(status_of(http2) == "HTTP/1.1 400 Bad Request");
}

TEST_CASE("a request head over 8 KiB gets 431; one just under is served", "[metrics][http]")
{
	Loop loop;
	auto server = serve(loop.get(), [] { return std::string("x 1\n"); });
	std::string big, fits, endless;
	loop.run_with([&] {
		big = http(server->port(), "GET /metrics HTTP/1.1\r\nX-Big: " +
						   std::string(9000, 'a') + "\r\n\r\n");
		std::string head = "GET /metrics HTTP/1.1\r\nX-Fill: ";
		head += std::string(8192 - head.size() - 4, 'b') + "\r\n\r\n";
		fits = http(server->port(), head);
		/* A head that never ends: answered, without waiting for the end. */
		int fd = connect_to(server->port());
		send_all(fd, "GET /metrics HTTP/1.1\r\n" + std::string(20000, 'c'));
		endless = read_all(fd);
		::close(fd);
	});
	CHECK(status_of(big) == "HTTP/1.1 431 Request Header Fields Too Large");
	CHECK(status_of(fits) == "HTTP/1.1 200 OK");
	CHECK(status_of(endless) == "HTTP/1.1 431 Request Header Fields Too Large");
}

TEST_CASE("a render that throws gives 500 and the server goes on", "[metrics][http]")
{
	Loop loop;
	std::atomic<bool> fail{true};
	auto server = serve(loop.get(), [&]() -> std::string {
		if (fail)
			throw std::runtime_error("boom");
		return "ok 1\n";
	});
	std::string r1, r2;
	loop.run_with([&] {
		r1 = get(server->port());
		fail = false;
		r2 = get(server->port());
	});
	CHECK(status_of(r1) == "HTTP/1.1 500 Internal Server Error");
	CHECK(body_of(r2) == "ok 1\n");
}

TEST_CASE("a large body is written in full", "[metrics][http]")
{
	Loop loop;
	std::string big(8 * 1024 * 1024, 'm');
	for (std::size_t i = 79; i < big.size(); i += 80)
		big[i] = '\n';
	auto server = serve(loop.get(), [&] { return big; });
	std::string r;
	loop.run_with([&] {
		int fd = connect_to(server->port());
		send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n");
		/* Read slowly at first so the server meets a full socket buffer. */
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		r = read_all(fd);
		::close(fd);
	});
	CHECK(status_of(r) == "HTTP/1.1 200 OK");
	CHECK(contains(r, "Content-Length: " + std::to_string(big.size()) + "\r\n"));
	CHECK(body_of(r) == big);
}

TEST_CASE("beyond 32 connections the next is closed at once; the rest are served",
	  "[metrics][http]")
{
	Loop loop;
	auto server = serve(loop.get(), [] { return std::string("x 1\n"); });
	std::vector<int> idle;
	ssize_t extra_read = -2;
	int extra_errno = 0;
	std::string on_held, after;
	loop.run_with([&] {
		for (int i = 0; i < 32; ++i)
			idle.push_back(connect_to(server->port()));
		int extra = connect_to(server->port());
		char c;
		extra_read = ::recv(extra, &c, 1, 0);
		extra_errno = errno;
		::close(extra);
		/* The held connections still work. */
		send_all(idle[0], "GET /metrics HTTP/1.1\r\n\r\n");
		on_held = read_all(idle[0]);
		for (int fd : idle)
			::close(fd);
		/* Once they are gone, new connections are served again. */
		for (int attempt = 0; attempt < 50; ++attempt) {
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
			after = get(server->port());
			if (status_of(after) == "HTTP/1.1 200 OK")
				break;
		}
	});
	for (int fd : idle)
		CHECK(fd >= 0);
	/* EOF, or a reset if the close raced the connection's first bytes. */
	CHECK((extra_read == 0 || (extra_read < 0 && extra_errno == ECONNRESET)));
	CHECK(status_of(on_held) == "HTTP/1.1 200 OK");
	CHECK(status_of(after) == "HTTP/1.1 200 OK");
}

TEST_CASE("a connection that says nothing is closed after the timeout", "[metrics][http]")
{
	Loop loop;
	MetricsHttpLimits limits;
	limits.timeout_ms = 200;
	auto server = serve(loop.get(), [] { return std::string("x 1\n"); }, limits);
	std::string got;
	double seconds = 0;
	loop.run_with([&] {
		int fd = connect_to(server->port());
		auto start = std::chrono::steady_clock::now();
		got = read_all(fd);
		seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
		::close(fd);
	});
	CHECK(got.empty());
	CHECK(seconds >= 0.15);
	CHECK(seconds < 3);
}

TEST_CASE("close() releases every descriptor, including live connections", "[metrics][http]")
{
	std::size_t before = count_open_fds();
	int held = -1;
	std::string r;
	{
		Loop loop;
		auto server = serve(loop.get(), [] { return std::string("x 1\n"); });
		loop.run_with([&] {
			held = connect_to(server->port());
			r = get(server->port());
			send_all(held, "GET /met"); /* half a request, left hanging */
		});
		CHECK(status_of(r) == "HTTP/1.1 200 OK");
		CHECK(server->connections() >= 1);
		server->close();
		server->close();
		CHECK(server->fd() == -1);
		CHECK(server->port() == 0);
		CHECK_FALSE(server->is_open());
		uv_run(loop.get(), UV_RUN_DEFAULT);
		/* The server closed the hanging connection: the client sees EOF. */
		CHECK(read_all(held).empty());
		::close(held);
		server.reset();
	}
	CHECK(count_open_fds() == before);
}

TEST_CASE("destroying the server from render() is safe", "[metrics][http]")
{
	std::size_t before = count_open_fds();
	{
		Loop loop;
		std::unique_ptr<MetricsHttpServer> server;
		server = serve(loop.get(), [&] {
			server.reset();
			return std::string("x 1\n");
		});
		std::uint16_t port = server->port();
		std::string r = "unset";
		loop.run_with([&] { r = get(port); });
		CHECK(server == nullptr);
		/* The connection went with the server, unanswered. */
		CHECK(r.empty());
	}
	CHECK(count_open_fds() == before);
}

TEST_CASE("adopt() serves an inherited listener, as after an upgrade", "[metrics][http]")
{
	std::size_t before = count_open_fds();
	{
		Loop loop;
		auto first = serve(loop.get(), [] { return std::string("gen 1\n"); });
		std::uint16_t port = first->port();
		UniqueFd passed(::fcntl(first->fd(), F_DUPFD_CLOEXEC, 0));
		REQUIRE(passed.is_valid());
		first.reset();
		uv_run(loop.get(), UV_RUN_DEFAULT);

		/* The listener handed on without ever closing: clients meanwhile just queue. */
		int fd_number = passed.get();
		auto second = MetricsHttpServer::adopt(loop.get(), std::move(passed),
						       [] { return std::string("gen 2\n"); });
		REQUIRE(second.has_value());
		CHECK((*second)->fd() == fd_number);
		CHECK((*second)->port() == port);
		std::string r;
		loop.run_with([&] { r = get(port); });
		CHECK(body_of(r) == "gen 2\n");
	}
	CHECK(count_open_fds() == before);
}

TEST_CASE("bad addresses and listeners are refused with an errno", "[metrics][http]")
{
	Loop loop;
	auto render = [] { return std::string(); };
	for (const char *bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:80x",
				"localhost:9101", "[::1]9101", "[::1]", "::1:9101", ":9101",
				"[127.0.0.1]:80", ""}) {
		INFO("address " << bad);
		auto r = MetricsHttpServer::listen(loop.get(), bad, render);
		REQUIRE_FALSE(r.has_value());
		CHECK(r.error() == EINVAL);
	}
	auto no_render = MetricsHttpServer::listen(loop.get(), "127.0.0.1:0", nullptr);
	REQUIRE_FALSE(no_render.has_value());
	CHECK(no_render.error() == EINVAL);

	UniqueFd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	auto not_listening = MetricsHttpServer::adopt(loop.get(), std::move(unbound), render);
	REQUIRE_FALSE(not_listening.has_value());
	CHECK(not_listening.error() == EINVAL);

	UniqueFd dgram(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	auto datagram = MetricsHttpServer::adopt(loop.get(), std::move(dgram), render);
	REQUIRE_FALSE(datagram.has_value());
	CHECK(datagram.error() == EINVAL);

	int p[2];
	REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
	::close(p[1]);
	auto pipe_end = MetricsHttpServer::adopt(loop.get(), UniqueFd(p[0]), render);
	REQUIRE_FALSE(pipe_end.has_value());
	CHECK(pipe_end.error() == ENOTSOCK);

	/* A port in use: the errno comes back. */
	auto first = serve(loop.get(), render);
	auto clash = MetricsHttpServer::listen(loop.get(),
					       "127.0.0.1:" + std::to_string(first->port()), render);
	REQUIRE_FALSE(clash.has_value());
	CHECK(clash.error() == EADDRINUSE);
}

TEST_CASE("IPv6 addresses work where the host has IPv6", "[metrics][http]")
{
	Loop loop;
	auto server = MetricsHttpServer::listen(loop.get(), "[::1]:0", [] { return std::string("v6 1\n"); });
	if (!server.has_value()) {
		WARN("no IPv6 loopback here: " << std::strerror(server.error()));
		return;
	}
	std::uint16_t port = (*server)->port();
	CHECK(port != 0);
	std::string r;
	loop.run_with([&] { r = http(port, "GET /metrics HTTP/1.1\r\n\r\n", AF_INET6); });
	CHECK(body_of(r) == "v6 1\n");
}
