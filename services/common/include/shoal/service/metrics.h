// Prometheus metrics: a text-format writer and a tiny HTTP server for GET /metrics on libuv.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <uv.h>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::service {

using Labels = std::vector<std::pair<std::string, std::string>>;

/*
 * Builds one scrape in the text exposition format 0.0.4. Samples of a family are grouped
 * under one # HELP / # TYPE however the calls interleave; the first call's help and type win.
 * Names are not renamed (a counter should be called *_total by its caller); characters a
 * name may not hold become '_', so the output always parses.
 */
class PrometheusWriter {
public:
	using Labels = service::Labels;

	void counter(std::string_view name, std::string_view help, double value,
		     const Labels &labels = {});
	void gauge(std::string_view name, std::string_view help, double value,
		   const Labels &labels = {});
	/* The text so far; the writer is empty again afterwards. */
	std::string take();

private:
	struct Family {
		std::string name;
		std::string help;
		const char *type;
		std::string samples;
	};
	void sample(const char *type, std::string_view name, std::string_view help, double value,
		    const Labels &labels);
	std::vector<Family> families_;
};

/* A value as the exposition format wants it: integers without exponent, NaN, +Inf, -Inf. */
std::string format_metric_value(double value);

struct MetricsHttpLimits {
	std::size_t max_connections = 32;  /* more are accepted and closed at once */
	std::size_t max_request_head = 8192; /* a longer request head gets 431 */
	std::uint64_t timeout_ms = 5000;   /* a connection's whole life, request to close */
};

/*
 * Serves GET (and HEAD) /metrics over HTTP/1.1, one request per connection, answered with
 * Connection: close. render() is called for every scrape, on the loop; an exception from it
 * becomes a 500. Other paths get 404, other methods 405, malformed requests 400.
 * Destroying the server (or close()) stops it; its handles and descriptors are released
 * once the loop runs their close callbacks, so run the loop after closing.
 */
class MetricsHttpServer {
public:
	using Render = std::function<std::string()>;

	/* address: "127.0.0.1:9101" or "[::1]:9101"; port 0 picks a free one. EINVAL if unparsable. */
	static Result<std::unique_ptr<MetricsHttpServer>> listen(uv_loop_t *loop,
								  const std::string &address,
								  Render render,
								  MetricsHttpLimits limits = {});
	/*
	 * Serves on a listening stream socket inherited across an upgrade: EINVAL for a socket
	 * that is not a listening stream socket, ENOTSOCK for a file. The descriptor is made
	 * non-blocking and close-on-exec.
	 */
	static Result<std::unique_ptr<MetricsHttpServer>> adopt(uv_loop_t *loop, UniqueFd listener,
								 Render render,
								 MetricsHttpLimits limits = {});

	~MetricsHttpServer();
	MetricsHttpServer(const MetricsHttpServer &) = delete;
	MetricsHttpServer &operator=(const MetricsHttpServer &) = delete;

	/* Stops listening and drops every connection. Safe to call twice, or from render(). */
	void close();
	bool is_open() const { return state_ != nullptr; }

	/* The listening socket (dup it to pass it on); -1 once closed. */
	int fd() const;
	/* The local port, in host order; 0 once closed. */
	std::uint16_t port() const;
	/* Connections being served right now. */
	std::size_t connections() const;

	struct State; /* shared with libuv callbacks; outlives the server until they let go */

private:
	explicit MetricsHttpServer(State *state) : state_(state) {}
	State *state_;
};

} // namespace shoal::service
