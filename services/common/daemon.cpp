// Daemon: start-up, clients and dispatch, result routing, the mailbox, status and stop.
#include "daemon.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <shoal/fdpass/peer.h>
#include <shoal/proto/messages.h>
#include <shoal/service/log.h>
#include <shoal/service/systemd.h>

#include "shoal_version.h"

namespace shoal::service {

using proto::ErrorCode;

namespace {

template <typename H>
void close_handle(H *h, bool &open)
{
	if (!open)
		return;
	open = false;
	uv_close(reinterpret_cast<uv_handle_t *>(h), nullptr);
}

std::int64_t ms_since(std::chrono::steady_clock::time_point t)
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
		.count();
}

} // namespace

nlohmann::json ClientRef::to_json() const
{
	return {{"connection", connection}, {"owner", owner}};
}

ClientRef ClientRef::from_json(const nlohmann::json &j)
{
	ClientRef c;
	c.connection = j.value("connection", std::uint64_t{0});
	c.owner = j.value("owner", std::string{});
	return c;
}

Daemon::Daemon(const ProgramInfo &info, std::unique_ptr<Service> service, nlohmann::json config,
	       std::vector<std::string> argv)
	: info_(info), service_(std::move(service)), config_(std::move(config)), argv_(std::move(argv)),
	  opts_(parse_runtime_options(config_)), log_(logger(info.name)), mailbox_(opts_.mailbox)
{
	if (int r = uv_loop_init(&loop_); r < 0)
		throw std::runtime_error(std::string("uv_loop_init: ") + uv_strerror(r));
	loop_open_ = true;
}

Daemon::~Daemon()
{
	service_.reset();
	conns_.clear();
	metrics_.reset();
	close_all_handles();
	if (loop_open_) {
		uv_run(&loop_, UV_RUN_DEFAULT);
		uv_loop_close(&loop_);
	}
}

int Daemon::run()
{
	service_->init(*this, config_);
	ops_ = service_->ops();

	const char *handoff = std::getenv("SHOAL_HANDOFF_FD");
	if (handoff) {
		int fd = std::atoi(handoff);
		::unsetenv("SHOAL_HANDOFF_FD");
		if (fd < 3 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			throw std::runtime_error("SHOAL_HANDOFF_FD does not name an open descriptor");
		take_over(UniqueFd(fd));
	} else {
		start_fresh();
	}

	uv_run(&loop_, UV_RUN_DEFAULT);
	return exit_code_.value_or(0);
}

/* ---------------------------------------------------------------- start-up */

void Daemon::start_fresh()
{
	open_control_socket();
	open_metrics(UniqueFd());
	service_->start();
	start_common();
	start_listening();
	log_->info("Serving on {} (pid {}, protocol v{})", opts_.socket.path, ::getpid(), proto::kVersion);
	notify_ready("serving");
}

void Daemon::open_control_socket()
{
	for (ActivatedSocket &s : take_activated_sockets()) {
		if (listener_.is_valid())
			continue; /* only the first; the rest close with s */
		if (auto r = check_control_socket(s.fd.get()); !r)
			throw std::runtime_error("socket passed by systemd (" + s.name +
						 ") is not a listening AF_UNIX SOCK_SEQPACKET socket");
		listener_ = std::move(s.fd);
		log_->info("Using the control socket passed by systemd ({})", s.name);
	}
	if (listener_.is_valid())
		return;
	auto fd = bind_control_socket(opts_.socket);
	if (!fd) {
		std::string why = errno_name(fd.error());
		if (fd.error() == EADDRINUSE)
			why += ": another process is serving it";
		else if (fd.error() == EEXIST)
			why += ": a file that is not a socket is in the way";
		throw std::runtime_error("Failed to bind " + opts_.socket.path + ": " + why);
	}
	listener_ = std::move(*fd);
	socket_inode_ = socket_file_inode(opts_.socket.path);
}

void Daemon::open_metrics(UniqueFd inherited)
{
	auto render = [this] { return render_metrics(); };
	if (inherited.is_valid()) {
		auto m = MetricsHttpServer::adopt(&loop_, std::move(inherited), render);
		if (m)
			metrics_ = std::move(*m);
		else
			log_->warn("Failed to adopt the metrics listener: {}", errno_name(m.error()));
		return;
	}
	if (opts_.metrics_listen.empty())
		return;
	auto m = MetricsHttpServer::listen(&loop_, opts_.metrics_listen, render);
	if (!m)
		throw std::runtime_error("Failed to listen for metrics on " + opts_.metrics_listen + ": " +
					 errno_name(m.error()));
	metrics_ = std::move(*m);
	log_->info("Metrics at http://{}/metrics", opts_.metrics_listen);
}

void Daemon::start_common()
{
	handles_open_ = true;
	uv_poll_init_socket(&loop_, &listen_poll_, listener_.get());
	listen_poll_.data = this;
	listen_poll_open_ = true;
	uv_timer_init(&loop_, &accept_retry_);
	accept_retry_.data = this;

	auto on_signal = [](uv_signal_t *h, int signum) {
		auto *d = static_cast<Daemon *>(h->data);
		if (signum == SIGHUP)
			d->start_upgrade(std::nullopt);
		else
			d->begin_stop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
	};
	for (uv_signal_t *s : {&sigterm_, &sigint_, &sighup_}) {
		uv_signal_init(&loop_, s);
		s->data = this;
	}
	uv_signal_start(&sigterm_, on_signal, SIGTERM);
	uv_signal_start(&sigint_, on_signal, SIGINT);
	uv_signal_start(&sighup_, on_signal, SIGHUP);

	uv_timer_init(&loop_, &sweep_);
	sweep_.data = this;
	uv_timer_start(&sweep_, [](uv_timer_t *t) {
		auto *d = static_cast<Daemon *>(t->data);
		if (std::size_t n = d->mailbox_.expire(Clock::now())) {
			d->counters_.mailbox_expired += n;
			d->log_->warn("{} results expired in the mailbox; their descriptors were closed", n);
		}
		for (const std::string &owner : d->mailbox_.owner_names())
			d->flush_mailbox(owner);
	}, 1000, 1000);
	uv_unref(reinterpret_cast<uv_handle_t *>(&sweep_));

	uv_timer_init(&loop_, &watchdog_);
	watchdog_.data = this;
	if (auto interval = watchdog_interval()) {
		auto half = std::chrono::duration_cast<std::chrono::milliseconds>(*interval / 2);
		uv_timer_start(&watchdog_, [](uv_timer_t *) { notify_watchdog(); }, 0,
			       std::max<std::uint64_t>(1, static_cast<std::uint64_t>(half.count())));
		uv_unref(reinterpret_cast<uv_handle_t *>(&watchdog_));
	}
	uv_timer_init(&loop_, &drain_);
	drain_.data = this;
}

void Daemon::start_listening()
{
	if (listening_ || !listen_poll_open_)
		return;
	listening_ = true;
	uv_poll_start(&listen_poll_, UV_READABLE, [](uv_poll_t *h, int status, int) {
		auto *d = static_cast<Daemon *>(h->data);
		if (status < 0) {
			d->log_->error("Failed to poll the control socket: {}", uv_strerror(status));
			return;
		}
		d->on_accept();
	});
}

void Daemon::stop_listening()
{
	if (!listening_)
		return;
	listening_ = false;
	uv_poll_stop(&listen_poll_);
}

/* ---------------------------------------------------------------- clients */

void Daemon::on_accept()
{
	for (int i = 0; i < 64 && listening_; i++) {
		UniqueFd sock(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
		if (!sock.is_valid()) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				/* Level-triggered poll would spin: back off and try again shortly. */
				log_->warn("Failed to accept a client: {} (retrying in 100 ms)", errno_name(errno));
				stop_listening();
				uv_timer_start(&accept_retry_, [](uv_timer_t *t) {
					static_cast<Daemon *>(t->data)->start_listening();
				}, 100, 0);
				return;
			}
			log_->error("Failed to accept a client: {}", errno_name(errno));
			return;
		}
		auto peer = peer_credentials(sock.get());
		if (!peer) {
			log_->warn("Failed to read a client's credentials: {}", errno_name(peer.error()));
			continue;
		}
		if (!opts_.access.allows(*peer)) {
			counters_.denied++;
			log_->warn("Refused pid {} uid {} gid {}: not in the allow-list", peer->pid, peer->uid,
				   peer->gid);
			refuse(std::move(sock), ErrorCode::denied,
			       "uid " + std::to_string(peer->uid) + " gid " + std::to_string(peer->gid) +
				       " may not use this daemon");
			continue;
		}
		if (conns_.size() >= opts_.max_clients) {
			counters_.busy++;
			log_->warn("Refused pid {}: {} clients already connected", peer->pid, conns_.size());
			refuse(std::move(sock), ErrorCode::busy,
			       "too many clients (limits.max_clients is " + std::to_string(opts_.max_clients) + ")");
			continue;
		}
		counters_.connections++;
		std::uint64_t id = next_conn_++;
		log_->debug("Client {} connected: pid {} uid {}", id, peer->pid, peer->uid);
		add_connection(id, std::move(sock), *peer, {}, 0, true);
	}
}

void Daemon::refuse(UniqueFd sock, ErrorCode code, const std::string &message)
{
	counters_.errors++;
	counters_.errors_by_code[std::string(proto::to_string(code))]++;
	/* Best effort: the socket buffer of a fresh connection always has room for one reply. */
	(void)send_message(sock.get(), proto::encode_error(std::nullopt, code, message));
	/*
	 * Closing a Unix socket with unread messages makes the peer's next read fail with
	 * ECONNRESET before it sees our reply; take what it already sent (closing any fds) first.
	 */
	for (int i = 0; i < 16; i++)
		if (!recv_message(sock.get()))
			break;
}

void Daemon::add_connection(std::uint64_t id, UniqueFd sock, const PeerCredentials &peer, std::string owner,
			    std::size_t inflight, bool start)
{
	ChannelLimits limits;
	limits.queue_bytes = opts_.client_queue_bytes;
	auto ch = Channel::open(&loop_, std::move(sock), limits);
	if (!ch) {
		log_->error("Failed to set up client {}: {}", id, errno_name(ch.error()));
		return;
	}
	auto c = std::make_unique<Connection>();
	c->id = id;
	c->channel = std::move(*ch);
	c->owner = std::move(owner);
	c->peer = peer;
	c->inflight = inflight;
	Connection &ref = *c;
	conns_[id] = std::move(c);
	if (start)
		start_connection(ref);
}

void Daemon::start_connection(Connection &c)
{
	std::uint64_t id = c.id;
	c.channel->start([this, id](ReceivedMessage m) { on_message(id, std::move(m)); },
			 [this, id](int error, std::deque<OutMessage> unsent) {
				 on_closed(id, error, std::move(unsent));
			 });
}

void Daemon::on_closed(std::uint64_t id, int error, std::deque<OutMessage> unsent)
{
	auto it = conns_.find(id);
	if (it == conns_.end())
		return;
	std::unique_ptr<Connection> c = std::move(it->second);
	conns_.erase(it);
	if (error == EPIPE)
		log_->debug("Client {} disconnected", id);
	else
		log_->info("Client {} connection failed: {}", id, errno_name(error));
	/* Whatever was queued for it goes to the owner's mailbox; replies without fds are moot. */
	for (OutMessage &m : unsent) {
		if (m.fds.empty())
			continue;
		if (c->owner.empty()) {
			lose("its client left without saying hello", m.fds.size());
			continue;
		}
		if (auto r = mailbox_.post(c->owner, std::move(m)); !r)
			lose("the mailbox is full", r.error().message.fds.size());
	}
	service_->client_closed(id);
}

void Daemon::on_message(std::uint64_t id, ReceivedMessage m)
{
	Connection *c = find(id);
	if (!c)
		return;
	counters_.requests++;
	auto id_of = [&] { return proto::salvage_id(m.data); };
	switch (m.error) {
	case 0:
		break;
	case EMSGSIZE:
		error_reply(*c, id_of(), ErrorCode::bad_request,
			    "message larger than " + std::to_string(kProtocolMaxMessage) + " bytes");
		return;
	case ETOOMANYREFS:
		error_reply(*c, id_of(), ErrorCode::bad_fds,
			    "more than " + std::to_string(kProtocolMaxFds) +
				    " file descriptors (all that arrived were closed)");
		return;
	default:
		error_reply(*c, id_of(), ErrorCode::bad_fds,
			    "control data other than SCM_RIGHTS (descriptors closed)");
		return;
	}

	auto req = proto::parse_request(m.data, m.fds.size());
	if (!req) {
		error_reply(*c, proto::salvage_id(m.data), req.error().code, req.error().message);
		return;
	}
	dispatch(*c, std::move(*req), std::move(m.fds));
}

void Daemon::dispatch(Connection &c, proto::Request req, std::vector<UniqueFd> fds)
{
	ClientRef client{c.id, c.owner};
	const std::string &op = req.op;

	if (op == "hello") {
		handle_hello(c, req);
		return;
	}
	if (op == "status" || op == "list" || op == "upgrade_daemon") {
		std::optional<proto::Failure> bad;
		if (op == "status") {
			if (auto r = proto::decode_status_request(req); !r)
				bad = r.error();
		} else if (op == "list") {
			if (auto r = proto::decode_list_request(req); !r)
				bad = r.error();
		} else if (auto r = proto::decode_upgrade_daemon(req); !r) {
			bad = r.error();
		}
		if (bad) {
			error_reply(c, req.id, bad->code, bad->message);
			return;
		}
		if (op == "status") {
			nlohmann::json s = status_fields();
			service_->fill_status(s);
			send_to(c, {proto::encode_message(req.id, "status", s), {}});
		} else if (op == "list") {
			send_to(c, {list_page(req), {}});
		} else {
			start_upgrade(Requester{c.id, req.id});
		}
		return;
	}

	if (std::find(ops_.begin(), ops_.end(), op) == ops_.end()) {
		proto::Failure f = proto::unknown_op_failure(op);
		error_reply(c, req.id, f.code, f.message);
		return;
	}
	if (stopping_) {
		error_reply(c, req.id, ErrorCode::busy, "the daemon is stopping");
		return;
	}
	if (c.inflight >= opts_.max_inflight) {
		counters_.busy++;
		error_reply(c, req.id, ErrorCode::busy,
		     "too many requests in flight (limits.max_inflight is " + std::to_string(opts_.max_inflight) + ")");
		return;
	}
	c.inflight++;
	Call call{client, std::move(req), std::move(fds), c.peer};
	std::string id = call.request.id;
	try {
		service_->handle(std::move(call));
	} catch (const std::exception &e) {
		/* Never let an exception unwind through libuv; the request still gets its answer. */
		log_->error("Failed to handle {}: {}", op, e.what());
		fail(client, id, ErrorCode::internal, e.what());
	}
}

void Daemon::handle_hello(Connection &c, const proto::Request &req)
{
	auto hello = proto::decode_hello(req);
	if (!hello) {
		error_reply(c, req.id, hello.error().code, hello.error().message);
		return;
	}
	if (!c.owner.empty() && c.owner != hello->owner) {
		error_reply(c, req.id, ErrorCode::bad_request,
		     "owner: this connection is already \"" + c.owner + "\"");
		return;
	}
	c.owner = hello->owner;
	std::size_t waiting = mailbox_.count(c.owner);
	send_to(c, {proto::encode_message(req.id, "welcome", {{"owner", c.owner}, {"mailbox", waiting}}), {}});
	log_->debug("Client {} is owner \"{}\" ({} results waiting)", c.id, c.owner, waiting);
	flush_mailbox(c.owner);
}

void Daemon::send_to(Connection &c, OutMessage m)
{
	auto r = c.channel->send(std::move(m));
	if (r)
		return;
	Refused &ref = r.error();
	if (ref.error == EMSGSIZE && ref.message.fds.empty()) {
		/* Every request is answered: a reply that cannot be sent becomes an error that can. */
		log_->error("Failed to send a reply of {} bytes: larger than the socket carries", ref.message.data.size());
		(void)c.channel->send({proto::encode_error(proto::salvage_id(ref.message.data), ErrorCode::internal,
							   "the reply is larger than one message can carry"),
				       {}});
		return;
	}
	if (!ref.message.fds.empty()) {
		if (c.owner.empty() || !mailbox_.post(c.owner, std::move(ref.message)))
			lose("its client cannot take it", ref.message.fds.size());
	}
}

void Daemon::route(const ClientRef &client, OutMessage m)
{
	Connection *c = find(client.connection);
	if ((!c || c->channel->congested()) && !client.owner.empty())
		c = find_owner(client.owner);
	if (c && mailbox_.count(c->owner) == 0) {
		auto r = c->channel->send(std::move(m));
		if (r)
			return;
		m = std::move(r.error().message);
	}
	if (client.owner.empty()) {
		if (!m.fds.empty())
			lose("its client left without saying hello", m.fds.size());
		return;
	}
	if (auto r = mailbox_.post(client.owner, std::move(m)); !r) {
		lose("the mailbox is full", r.error().message.fds.size());
		return;
	}
	if (c)
		flush_mailbox(client.owner);
}

void Daemon::flush_mailbox(const std::string &owner)
{
	Connection *c = find_owner(owner);
	if (!c)
		return;
	std::deque<Mailbox::Letter> letters = mailbox_.take(owner);
	while (!letters.empty()) {
		auto r = c->channel->send(std::move(letters.front().message));
		if (!r) {
			letters.front().message = std::move(r.error().message);
			break;
		}
		letters.pop_front();
	}
	mailbox_.put_back(owner, std::move(letters));
}

void Daemon::lose(std::string_view why, std::size_t fds)
{
	counters_.results_lost++;
	log_->warn("Dropped a result with {} descriptors: {}", fds, why);
}

Daemon::Connection *Daemon::find(std::uint64_t conn)
{
	auto it = conns_.find(conn);
	return it == conns_.end() || !it->second->channel->is_open() ? nullptr : it->second.get();
}

const Daemon::Connection *Daemon::find(std::uint64_t conn) const
{
	auto it = conns_.find(conn);
	return it == conns_.end() || !it->second->channel->is_open() ? nullptr : it->second.get();
}

Daemon::Connection *Daemon::find_owner(const std::string &owner)
{
	Connection *best = nullptr;
	for (auto &[id, c] : conns_) {
		if (c->owner != owner || !c->channel->is_open() || c->channel->congested())
			continue;
		best = c.get(); /* the newest: a restarted proxy's fresh connection */
	}
	return best;
}

void Daemon::reply(const ClientRef &client, const std::string &id, std::string_view op,
		   const nlohmann::json &fields, std::vector<UniqueFd> fds)
{
	if (Connection *c = find(client.connection); c && c->inflight > 0)
		c->inflight--;
	route(client, {proto::encode_message(id, op, fields), std::move(fds)});
}

void Daemon::fail(const ClientRef &client, const std::string &id, ErrorCode code, std::string_view message)
{
	Connection *c = find(client.connection);
	if (!c) {
		counters_.errors++;
		counters_.errors_by_code[std::string(proto::to_string(code))]++;
		return; /* an error without fds is of no use to a mailbox */
	}
	if (c->inflight > 0)
		c->inflight--;
	error_reply(*c, id, code, message);
}

void Daemon::error_reply(Connection &c, const std::optional<std::string> &id, ErrorCode code,
			 std::string_view message)
{
	counters_.errors++;
	counters_.errors_by_code[std::string(proto::to_string(code))]++;
	send_to(c, {proto::encode_error(id, code, message), {}});
}

void Daemon::deliver(const ClientRef &client, std::string_view op, const nlohmann::json &fields,
		     std::vector<UniqueFd> fds, const std::string &id)
{
	std::optional<std::string> rid;
	if (!id.empty())
		rid = id;
	route(client, {proto::encode_message(rid, op, fields), std::move(fds)});
}

void Daemon::detach(const ClientRef &client)
{
	if (Connection *c = find(client.connection); c && c->inflight > 0)
		c->inflight--;
}

void Daemon::deliver_error(const ClientRef &client, const std::string &id, ErrorCode code, std::string_view message)
{
	Connection *c = find(client.connection);
	if (!c) {
		counters_.errors++;
		counters_.errors_by_code[std::string(proto::to_string(code))]++;
		return;
	}
	error_reply(*c, id, code, message);
}

bool Daemon::client_connected(std::uint64_t connection) const
{
	return find(connection) != nullptr;
}

/* ---------------------------------------------------------------- status and metrics */

std::string Daemon::list_page(const proto::Request &req)
{
	std::uint64_t offset = proto::decode_list_request(req)->offset;
	nlohmann::json all = service_->list();
	nlohmann::json page = nlohmann::json::array();
	/* As many tasks as fit in one datagram, leaving room for the envelope. */
	std::size_t budget = kProtocolMaxMessage - 512, used = 0;
	std::uint64_t next = offset;
	for (; next < all.size(); next++) {
		std::size_t size = all[next].dump().size() + 1;
		if (used + size > budget && !page.empty())
			break;
		used += size;
		page.push_back(std::move(all[next]));
	}
	nlohmann::json next_offset = next < all.size() ? nlohmann::json(next) : nlohmann::json(nullptr);
	return proto::encode_message(req.id, "list",
				     {{"tasks", std::move(page)}, {"total", all.size()}, {"next_offset", next_offset}});
}

nlohmann::json Daemon::status_fields()
{
	auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(started_wall_.time_since_epoch());
	nlohmann::json errors = nlohmann::json::object();
	for (const auto &[code, n] : counters_.errors_by_code)
		errors[code] = n;
	return {
		{"daemon", info_.name},
		{"version", SHOAL_VERSION},
		{"protocol", proto::kVersion},
		{"pid", ::getpid()},
		{"uptime_ms", ms_since(started_)},
		{"started_at_ms", wall.count()},
		{"upgrades", generation_},
		{"clients", conns_.size()},
		{"mailbox", {{"owners", mailbox_.owners()}, {"messages", mailbox_.messages()}}},
		{"counters",
		 {{"connections", counters_.connections},
		  {"requests", counters_.requests},
		  {"errors", counters_.errors},
		  {"errors_by_code", errors},
		  {"denied", counters_.denied},
		  {"busy", counters_.busy},
		  {"results_lost", counters_.results_lost},
		  {"mailbox_expired", counters_.mailbox_expired},
		  {"upgrades_failed", counters_.upgrades_failed}}},
	};
}

std::string Daemon::render_metrics()
{
	PrometheusWriter w;
	const PrometheusWriter::Labels d{{"daemon", info_.name}};
	w.gauge("shoal_up", "1 while the daemon serves", 1, d);
	w.gauge("shoal_uptime_seconds", "seconds since this daemon's work began (kept across upgrades)",
		static_cast<double>(ms_since(started_)) / 1000.0, d);
	w.counter("shoal_upgrades_total", "live upgrades this daemon's work has gone through",
		  static_cast<double>(generation_), d);
	w.counter("shoal_upgrades_failed_total", "live upgrades that failed (the old process kept serving)",
		  static_cast<double>(counters_.upgrades_failed), d);
	w.gauge("shoal_clients", "connected clients", static_cast<double>(conns_.size()), d);
	w.counter("shoal_connections_total", "client connections accepted",
		  static_cast<double>(counters_.connections), d);
	w.counter("shoal_requests_total", "requests received", static_cast<double>(counters_.requests), d);
	for (const auto &[code, n] : counters_.errors_by_code)
		w.counter("shoal_errors_total", "error replies by code", static_cast<double>(n),
			  {{"daemon", info_.name}, {"code", code}});
	w.counter("shoal_denied_total", "connections refused by the allow-list",
		  static_cast<double>(counters_.denied), d);
	w.gauge("shoal_mailbox_messages", "results waiting for their owner",
		static_cast<double>(mailbox_.messages()), d);
	w.gauge("shoal_mailbox_owners", "owners with results waiting", static_cast<double>(mailbox_.owners()), d);
	w.counter("shoal_mailbox_expired_total", "results whose owner did not return in time",
		  static_cast<double>(counters_.mailbox_expired), d);
	w.counter("shoal_results_lost_total", "results that could be delivered nowhere",
		  static_cast<double>(counters_.results_lost), d);
	service_->write_metrics(w);
	return w.take();
}

/* ---------------------------------------------------------------- stop */

void Daemon::begin_stop(const char *why)
{
	if (stopping_)
		return;
	stopping_ = true;
	log_->info("Stopping ({}): handing every task back to its owner", why);
	notify_stopping();
	if (upgrade_ && !upgrade_->handed_over)
		abort_upgrade("the daemon is stopping");
	stop_listening();
	service_->shutdown();
	stop_deadline_ = Clock::now() + opts_.stop_timeout;
	uv_timer_start(&drain_, [](uv_timer_t *t) { static_cast<Daemon *>(t->data)->check_drained(); }, 0, 20);
}

void Daemon::check_drained()
{
	bool drained = true;
	for (auto &[id, c] : conns_)
		drained = drained && c->channel->queued_messages() == 0;
	if (!drained && Clock::now() < stop_deadline_)
		return;
	if (!drained)
		log_->warn("Stopped with results still queued to clients that did not read them");
	if (mailbox_.messages())
		log_->warn("Stopped with {} results waiting for owners that did not return; their descriptors are closed",
			   mailbox_.messages());
	unlink_control_socket(opts_.socket.path, socket_inode_);
	finish(0);
}

void Daemon::finish(int code)
{
	exit_code_ = code;
	conns_.clear();
	mailbox_.clear();
	metrics_.reset();
	close_upgrade();
	close_all_handles();
}

void Daemon::close_all_handles()
{
	close_handle(&listen_poll_, listen_poll_open_);
	listening_ = false;
	if (handles_open_) {
		bool t = true;
		close_handle(&accept_retry_, t);
		for (uv_signal_t *s : {&sigterm_, &sigint_, &sighup_}) {
			t = true;
			close_handle(s, t);
		}
		for (uv_timer_t *tm : {&sweep_, &watchdog_, &drain_}) {
			t = true;
			close_handle(tm, t);
		}
		handles_open_ = false;
	}
	listener_.reset();
}

/* ---------------------------------------------------------------- entry point */

int run_daemon(const ProgramInfo &info, std::unique_ptr<Service> service, int argc, char **argv)
{
	::signal(SIGPIPE, SIG_IGN);
	/* Every task holds descriptors: lift the soft limit to what we are allowed. */
	struct rlimit rl {};
	if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &rl);
	}

	ConfigSchema schema;
	add_runtime_options(schema, info.name);
	service->add_options(schema);
	CommandLine cl = parse_command_line(info, schema, argc, argv);
	if (!cl.config) {
		std::fputs(cl.output.c_str(), cl.to_stderr ? stderr : stdout);
		return cl.exit_code;
	}
	setup_logging((*cl.config)["log_level"].get<std::string>());
	auto log = logger(info.name);
	try {
		Daemon d(info, std::move(service), std::move(*cl.config), std::vector<std::string>(argv, argv + argc));
		return d.run();
	} catch (const std::exception &e) {
		log->critical("Failed to start: {}", e.what());
		notify_status(std::string("failed to start: ") + e.what());
		return 1;
	}
}

} // namespace shoal::service
