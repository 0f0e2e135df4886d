// Daemon: the concrete Runtime: control socket, client connections, dispatch, mailbox, signals, upgrades.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/channel.h>
#include <shoal/service/config.h>
#include <shoal/service/metrics.h>
#include <shoal/service/runtime.h>

#include "handoff_link.h"
#include "mailbox.h"
#include "runtime_options.h"

namespace shoal::service {

class Daemon final : public Runtime {
public:
	Daemon(const ProgramInfo &info, std::unique_ptr<Service> service, nlohmann::json config,
	       std::vector<std::string> argv);
	~Daemon() override;

	/* Serves until stopped or handed over; returns the exit code. Throws on start-up failure. */
	int run();

	uv_loop_t *loop() override { return &loop_; }
	spdlog::logger &log() override { return *log_; }
	void reply(const ClientRef &client, const std::string &id, std::string_view op,
		   const nlohmann::json &fields, std::vector<UniqueFd> fds) override;
	void fail(const ClientRef &client, const std::string &id, proto::ErrorCode code,
		  std::string_view message) override;
	void deliver(const ClientRef &client, std::string_view op, const nlohmann::json &fields,
		     std::vector<UniqueFd> fds, const std::string &id) override;
	void detach(const ClientRef &client) override;
	void deliver_error(const ClientRef &client, const std::string &id, proto::ErrorCode code,
			   std::string_view message) override;
	bool client_connected(std::uint64_t connection) const override;

private:
	using Clock = std::chrono::steady_clock;

	struct Connection {
		std::uint64_t id = 0;
		std::unique_ptr<Channel> channel;
		std::string owner;
		PeerCredentials peer;
		std::size_t inflight = 0;
	};

	struct Requester {
		std::uint64_t connection;
		std::string id;
	};

	/* The old process's side of one live upgrade. */
	/*
	 * The old process's side of one live upgrade. Its handles point at it (data), so once
	 * retired it lives on until libuv has closed them all, and a child that failed is reaped
	 * (its exit seen) before its process handle closes: no zombies.
	 */
	struct Upgrade {
		Daemon *daemon = nullptr;
		uv_process_t process{};
		uv_poll_t poll{};
		uv_timer_t timer{};
		std::unique_ptr<HandoffLink> link;
		std::optional<Requester> requester;
		Clock::time_point started;
		pid_t pid = 0;
		int handles_open = 0;
		bool process_open = false;
		bool poll_open = false;
		bool timer_open = false;
		bool exited = false;
		bool link_closed = false;
		bool handed_over = false;
		bool retired = false;
		int exit_status = 0;
	};
	static void upgrade_handle_closed(uv_handle_t *h);
	static void upgrade_timer_fired(uv_timer_t *t);

	/* start-up */
	void start_fresh();
	void open_control_socket();
	void start_common();
	void start_listening();
	void stop_listening();
	void open_metrics(UniqueFd inherited);

	/* clients */
	void on_accept();
	void refuse(UniqueFd sock, proto::ErrorCode code, const std::string &message);
	void add_connection(std::uint64_t id, UniqueFd sock, const PeerCredentials &peer,
			    std::string owner, std::size_t inflight, bool start);
	void start_connection(Connection &c);
	void on_message(std::uint64_t conn, ReceivedMessage m);
	void on_closed(std::uint64_t conn, int error, std::deque<OutMessage> unsent);
	void dispatch(Connection &c, proto::Request req, std::vector<UniqueFd> fds);
	void handle_hello(Connection &c, const proto::Request &req);
	void send_to(Connection &c, OutMessage m);
	/* An error the runtime itself answers (not counted against the client's in-flight requests). */
	void error_reply(Connection &c, const std::optional<std::string> &id, proto::ErrorCode code,
			 std::string_view message);
	void route(const ClientRef &client, OutMessage m);
	void flush_mailbox(const std::string &owner);
	void lose(std::string_view why, std::size_t fds);
	Connection *find(std::uint64_t conn);
	const Connection *find(std::uint64_t conn) const;
	Connection *find_owner(const std::string &owner);

	nlohmann::json status_fields();
	/* One page of list, from the request's offset, as large as one message allows. */
	std::string list_page(const proto::Request &req);
	std::string render_metrics();

	/* live upgrade, old side */
	void start_upgrade(std::optional<Requester> requester);
	void on_upgrade_readable();
	void transfer();
	void abort_upgrade(const std::string &why);
	static std::int64_t ms_since_start(Clock::time_point t);
	void close_upgrade();

	/* live upgrade, new side */
	void take_over(UniqueFd link);

	/* stop */
	void begin_stop(const char *why);
	void check_drained();
	void finish(int code);
	void close_all_handles();

	const ProgramInfo &info_;
	std::unique_ptr<Service> service_;
	std::vector<std::string> ops_; /* the service's ops, asked once */
	nlohmann::json config_;
	std::vector<std::string> argv_;
	RuntimeOptions opts_;
	std::shared_ptr<spdlog::logger> log_;

	uv_loop_t loop_{};
	bool loop_open_ = false;

	UniqueFd listener_;
	uv_poll_t listen_poll_{};
	bool listen_poll_open_ = false;
	bool listening_ = false;
	ino_t socket_inode_ = 0; /* the socket file we bound, to remove only our own */
	uv_timer_t accept_retry_{};

	std::map<std::uint64_t, std::unique_ptr<Connection>> conns_;
	std::uint64_t next_conn_ = 1;
	Mailbox mailbox_;

	std::unique_ptr<MetricsHttpServer> metrics_;

	uv_signal_t sigterm_{}, sigint_{}, sighup_{};
	uv_timer_t sweep_{}, watchdog_{}, drain_{};
	bool handles_open_ = false;

	std::unique_ptr<Upgrade> upgrade_;
	std::optional<Requester> took_over_for_; /* new side: who asked for the upgrade that started us */
	std::int64_t took_over_started_ms_ = 0;
	pid_t predecessor_ = 0;

	Clock::time_point started_ = Clock::now();
	std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
	std::uint64_t generation_ = 0;
	bool stopping_ = false;
	Clock::time_point stop_deadline_{};
	std::optional<int> exit_code_;

	struct Counters {
		std::uint64_t connections = 0;
		std::uint64_t requests = 0;
		std::uint64_t errors = 0;
		std::uint64_t denied = 0;
		std::uint64_t busy = 0;
		std::uint64_t results_lost = 0;
		std::uint64_t mailbox_expired = 0;
		std::uint64_t upgrades_failed = 0;
		std::map<std::string, std::uint64_t> errors_by_code;
	} counters_;
};

} // namespace shoal::service
