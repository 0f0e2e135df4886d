// The live upgrade: start the new binary, move listener, clients, mailbox and tasks to it, and step aside.
#include "daemon.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <unistd.h>

#include <shoal/service/log.h>
#include <shoal/service/systemd.h>

extern char **environ;

namespace shoal::service {

using proto::ErrorCode;

namespace {

/*
 * The records on the handoff link, in order:
 *   new → old  {"t":"ready","pid":N}
 *   old → new  {"t":"begin",…runtime state…}
 *              {"t":"listener"} + [control socket]      {"t":"metrics"} + [metrics listener]
 *              {"t":"conn",…} + [client socket]         {"t":"queued","conn":N,"data":…} + fds
 *              {"t":"mail","owner":…,"ttl_ms":N,"data":…} + fds
 *              {"t":"items","items":[{"record":…,"nfds":N},…]} + their fds, in order
 *                                                        (the service's items, batched)
 *              {"t":"end","items":N}
 *   new → old  {"t":"ack","items":N}  or  {"t":"nack","error":…}
 *   old → new  {"t":"finish"}   (only now may the new process touch any of it)
 * The old process keeps every descriptor until "finish" is sent, so any failure before that
 * leaves it able to carry on as if nothing happened.
 */

/* Variables that describe this process, not its successor. */
bool inherited_env(const char *kv)
{
	static const char *drop[] = {"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "WATCHDOG_PID=",
				     "SHOAL_HANDOFF_FD="};
	for (const char *d : drop)
		if (std::strncmp(kv, d, std::strlen(d)) == 0)
			return false;
	return true;
}

/* A batch stays under SCM_MAX_FD (253) and well under kHandoffMaxMessage. */
constexpr std::size_t kBatchFds = 240;
constexpr std::size_t kBatchBytes = 96 * 1024;

std::int64_t wall_ms()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

std::vector<int> borrowed(const std::vector<UniqueFd> &fds)
{
	std::vector<int> out;
	for (const UniqueFd &fd : fds)
		out.push_back(fd.get());
	return out;
}

} // namespace

void Daemon::start_upgrade(std::optional<Requester> requester)
{
	auto refuse_upgrade = [&](ErrorCode code, const std::string &why) {
		log_->warn("Not upgrading: {}", why);
		if (requester)
			if (Connection *c = find(requester->connection))
				error_reply(*c, requester->id, code, why);
	};
	if (upgrade_) {
		refuse_upgrade(ErrorCode::busy, "an upgrade is already in progress");
		return;
	}
	if (stopping_) {
		refuse_upgrade(ErrorCode::busy, "the daemon is stopping");
		return;
	}
	auto pair = handoff_socketpair();
	if (!pair) {
		refuse_upgrade(ErrorCode::internal, "socketpair: " + errno_name(pair.error()));
		return;
	}

	auto up = std::make_unique<Upgrade>();
	up->requester = requester;
	up->started = Clock::now();

	std::vector<std::string> args = argv_;
	if (opts_.upgrade_binary != "/proc/self/exe")
		args[0] = opts_.upgrade_binary;
	std::vector<char *> argp;
	for (std::string &a : args)
		argp.push_back(a.data());
	argp.push_back(nullptr);
	std::vector<std::string> env;
	for (char **e = environ; *e; e++)
		if (inherited_env(*e))
			env.emplace_back(*e);
	env.emplace_back("SHOAL_HANDOFF_FD=3");
	std::vector<char *> envp;
	for (std::string &e : env)
		envp.push_back(e.data());
	envp.push_back(nullptr);

	uv_stdio_container_t stdio[4];
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	stdio[3].flags = UV_INHERIT_FD;
	stdio[3].data.fd = pair->second.get();

	uv_process_options_t o{};
	o.file = opts_.upgrade_binary.c_str();
	o.args = argp.data();
	o.env = envp.data();
	o.stdio = stdio;
	o.stdio_count = 4;
	o.exit_cb = [](uv_process_t *p, int64_t status, int signal) {
		auto *u = static_cast<Upgrade *>(p->data);
		u->exited = true;
		u->exit_status = signal ? 128 + signal : static_cast<int>(status);
		if (u->retired) {
			u->process_open = false;
			uv_close(reinterpret_cast<uv_handle_t *>(p), upgrade_handle_closed);
		} else if (!u->handed_over) {
			u->daemon->abort_upgrade("the new process exited with status " +
						 std::to_string(u->exit_status) + " before taking over");
		}
	};
	up->daemon = this;
	up->process.data = up.get();
	int r = uv_spawn(&loop_, &up->process, &o);
	if (r < 0) {
		/* A failed uv_spawn still initialised the handle: close it before up goes away. */
		up->process_open = true;
		up->handles_open = 1;
		upgrade_ = std::move(up);
		close_upgrade();
		counters_.upgrades_failed++;
		refuse_upgrade(ErrorCode::internal,
			       "failed to start " + opts_.upgrade_binary + ": " + uv_strerror(r));
		return;
	}
	up->process_open = true;
	up->handles_open = 1;
	up->pid = up->process.pid;
	pair->second.reset();
	up->link = std::make_unique<HandoffLink>(std::move(pair->first));

	uv_poll_init_socket(&loop_, &up->poll, up->link->fd());
	up->poll.data = up.get();
	up->poll_open = true;
	up->handles_open++;
	uv_poll_start(&up->poll, UV_READABLE | UV_DISCONNECT, [](uv_poll_t *h, int, int) {
		static_cast<Upgrade *>(h->data)->daemon->on_upgrade_readable();
	});
	uv_timer_init(&loop_, &up->timer);
	up->timer.data = up.get();
	up->timer_open = true;
	up->handles_open++;
	uv_timer_start(&up->timer, upgrade_timer_fired, static_cast<std::uint64_t>(opts_.upgrade_timeout.count()), 0);

	upgrade_ = std::move(up);
	notify_reloading();
	log_->info("Live upgrade: started {} as pid {}", opts_.upgrade_binary, upgrade_->pid);
}

void Daemon::on_upgrade_readable()
{
	Upgrade &up = *upgrade_;
	auto rec = up.link->recv(Clock::now());
	if (!rec) {
		if (rec.error() == ETIMEDOUT || rec.error() == EAGAIN)
			return;
		/* Most likely it is exiting: give its exit status a moment to tell us why. */
		up.link_closed = true;
		uv_poll_stop(&up.poll);
		uv_timer_start(&up.timer, upgrade_timer_fired, 1000, 0);
		return;
	}
	if (rec->json.value("t", "") != "ready") {
		abort_upgrade("the new process sent something other than ready");
		return;
	}
	uv_poll_stop(&up.poll);
	uv_timer_stop(&up.timer);
	transfer();
}

void Daemon::transfer()
{
	Upgrade &up = *upgrade_;
	auto deadline = Clock::now() + opts_.upgrade_timeout;
	std::size_t items = 0, tasks = 0;

	/* Safe point: no new clients, no requests, no task I/O until we know who runs them. */
	auto t0 = Clock::now();
	stop_listening();
	for (auto &[id, c] : conns_)
		c->channel->pause();
	service_->pause();
	auto t_paused = Clock::now();

	std::map<std::uint64_t, std::deque<OutMessage>> queues;
	std::string failure;
	auto send = [&](const nlohmann::json &rec, std::span<const int> fds) {
		if (!failure.empty())
			return;
		if (auto r = up.link->send(rec, fds, deadline); !r)
			failure = "sending " + rec.value("t", std::string("?")) + ": " + errno_name(r.error());
	};

	nlohmann::json begin = {
		{"t", "begin"},
		{"old_pid", ::getpid()},
		{"generation", generation_},
		{"started_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
					  started_wall_.time_since_epoch()).count()},
		{"uptime_ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count()},
		{"upgrade_began_ms", wall_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(
							 Clock::now() - up.started).count()},
		{"socket_inode", socket_inode_},
		{"next_conn", next_conn_},
		{"counters", {{"connections", counters_.connections}, {"requests", counters_.requests},
			      {"errors", counters_.errors}, {"denied", counters_.denied}, {"busy", counters_.busy},
			      {"results_lost", counters_.results_lost}, {"mailbox_expired", counters_.mailbox_expired},
			      {"upgrades_failed", counters_.upgrades_failed},
			      {"errors_by_code", counters_.errors_by_code}}},
	};
	if (up.requester)
		begin["requester"] = {{"conn", up.requester->connection}, {"id", up.requester->id}};
	send(begin, {});

	int lfd = listener_.get();
	send({{"t", "listener"}}, std::span<const int>(&lfd, 1));
	if (metrics_) {
		int mfd = metrics_->fd();
		send({{"t", "metrics"}}, std::span<const int>(&mfd, 1));
	}

	for (auto &[id, c] : conns_) {
		if (!c->channel->is_open())
			continue;
		int cfd = c->channel->fd();
		send({{"t", "conn"}, {"id", id}, {"owner", c->owner}, {"inflight", c->inflight},
		      {"pid", c->peer.pid}, {"uid", c->peer.uid}, {"gid", c->peer.gid}},
		     std::span<const int>(&cfd, 1));
		std::deque<OutMessage> q = c->channel->take_queue();
		for (const OutMessage &m : q)
			send({{"t", "queued"}, {"conn", id}, {"data", m.data}}, borrowed(m.fds));
		queues[id] = std::move(q);
	}

	auto now = Clock::now();
	mailbox_.for_each([&](const std::string &owner, const Mailbox::Letter &l) {
		auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(l.expires - now).count();
		send({{"t", "mail"}, {"owner", owner}, {"ttl_ms", std::max<std::int64_t>(ttl, 1)},
		      {"data", l.message.data}},
		     borrowed(l.message.fds));
	});

	/*
	 * Items travel in batches of up to kBatchFds descriptors: one sendmsg per hundred relays
	 * instead of one each is most of what makes 10,000 relays move in well under a second.
	 */
	nlohmann::json batch = nlohmann::json::array();
	std::vector<int> batch_fds;
	std::size_t batch_bytes = 0;
	auto flush_batch = [&] {
		if (batch.empty())
			return;
		send({{"t", "items"}, {"items", std::move(batch)}}, batch_fds);
		batch = nlohmann::json::array();
		batch_fds.clear();
		batch_bytes = 0;
	};
	service_->export_items([&](ExportItem item) {
		items++;
		tasks += item.is_task;
		std::size_t bytes = item.record.dump().size();
		if (batch_fds.size() + item.fds.size() > kBatchFds || batch_bytes + bytes > kBatchBytes)
			flush_batch();
		batch_bytes += bytes;
		batch.push_back({{"record", std::move(item.record)}, {"nfds", item.fds.size()}});
		batch_fds.insert(batch_fds.end(), item.fds.begin(), item.fds.end());
	});
	flush_batch();
	send({{"t", "end"}, {"items", items}, {"tasks", tasks}}, {});
	auto t_sent = Clock::now();

	if (failure.empty()) {
		auto ack = up.link->recv(deadline);
		if (!ack)
			failure = "waiting for the new process to take everything: " + errno_name(ack.error());
		else if (ack->json.value("t", "") != "ack")
			failure = "the new process refused: " + ack->json.value("error", std::string("(no reason)"));
	}

	auto t_acked = Clock::now();
	auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
	std::string timing = "new process ready after " + std::to_string(ms(t0 - up.started)) + " ms, paused in " +
			     std::to_string(ms(t_paused - t0)) + " ms, sent in " + std::to_string(ms(t_sent - t_paused)) +
			     " ms, acknowledged " + std::to_string(ms(t_acked - t_sent)) + " ms later";

	if (!failure.empty()) {
		/* Nothing left our hands: put the queues back and carry on. */
		for (auto &[id, q] : queues) {
			Connection *c = find(id);
			for (OutMessage &m : q)
				if (c)
					(void)c->channel->send(std::move(m));
		}
		service_->resume();
		for (auto &[id, c] : conns_)
			c->channel->resume();
		start_listening();
		abort_upgrade(failure);
		return;
	}

	/* The point of no return: systemd learns the new main pid, then the new process may start. */
	up.handed_over = true;
	notify_handed_over(up.pid);
	(void)up.link->send({{"t", "finish"}}, {}, deadline);
	log_->info("Live upgrade: handed {} clients, {} mailbox results and {} tasks to pid {} in {} ms ({})",
		   conns_.size(), mailbox_.messages(), tasks, up.pid, ms_since_start(up.started), timing);

	service_->abandon();
	for (auto &[id, c] : conns_)
		(void)c->channel->take_queue();
	finish(0);
}

std::int64_t Daemon::ms_since_start(Clock::time_point t)
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

void Daemon::abort_upgrade(const std::string &why)
{
	if (!upgrade_ || upgrade_->handed_over)
		return;
	Upgrade &up = *upgrade_;
	counters_.upgrades_failed++;
	log_->error("Live upgrade failed, still serving: {}", why);
	if (!up.exited && up.pid > 0)
		::kill(up.pid, SIGKILL); /* our own child, which never took anything over */
	notify_ready("serving (upgrade failed: " + why + ")");
	if (up.requester)
		if (Connection *c = find(up.requester->connection))
			error_reply(*c, up.requester->id, ErrorCode::internal, "upgrade failed: " + why);
	close_upgrade();
}

void Daemon::upgrade_timer_fired(uv_timer_t *t)
{
	auto *u = static_cast<Upgrade *>(t->data);
	u->daemon->abort_upgrade(u->link_closed ? "the new process closed the upgrade link"
						: "the new process did not become ready in time");
}

void Daemon::upgrade_handle_closed(uv_handle_t *h)
{
	auto *u = static_cast<Upgrade *>(h->data);
	if (--u->handles_open == 0 && u->retired)
		delete u;
}

void Daemon::close_upgrade()
{
	if (!upgrade_)
		return;
	Upgrade *u = upgrade_.release();
	u->retired = true;
	u->link.reset();
	if (u->poll_open) {
		u->poll_open = false;
		uv_close(reinterpret_cast<uv_handle_t *>(&u->poll), upgrade_handle_closed);
	}
	if (u->timer_open) {
		u->timer_open = false;
		uv_close(reinterpret_cast<uv_handle_t *>(&u->timer), upgrade_handle_closed);
	}
	/*
	 * A successor that took over lives on; closing the handle does not touch it. A child that
	 * failed keeps its handle until its exit is seen (exit_cb closes it), so it is reaped.
	 */
	if (u->process_open && (u->exited || u->handed_over)) {
		u->process_open = false;
		uv_close(reinterpret_cast<uv_handle_t *>(&u->process), upgrade_handle_closed);
	}
	if (u->handles_open == 0)
		delete u;
}

/* ---------------------------------------------------------------- the new process */

void Daemon::take_over(UniqueFd fd)
{
	HandoffLink link(std::move(fd));
	auto deadline = Clock::now() + opts_.upgrade_timeout;
	auto fail_takeover = [&](const std::string &why) {
		(void)link.send({{"t", "nack"}, {"error", why}}, {}, deadline);
		throw std::runtime_error("Failed to take over from the running daemon: " + why);
	};

	if (auto r = link.send({{"t", "ready"}, {"pid", ::getpid()}}, {}, deadline); !r)
		throw std::runtime_error("Failed to reach the running daemon: " + errno_name(r.error()));

	UniqueFd metrics_fd;
	std::map<std::uint64_t, std::deque<OutMessage>> queued;
	std::size_t items = 0, tasks = 0;
	std::int64_t upgrade_began_ms = 0;
	nlohmann::json begin;

	for (;;) {
		auto rec = link.recv(deadline);
		if (!rec)
			throw std::runtime_error("Failed to take over: the running daemon went away (" +
						 errno_name(rec.error()) + ")");
		const nlohmann::json &j = rec->json;
		const std::string t = j.value("t", "");
		try {
			if (t == "begin") {
				begin = j;
			} else if (t == "listener" && rec->fds.size() == 1) {
				listener_ = std::move(rec->fds[0]);
			} else if (t == "metrics" && rec->fds.size() == 1) {
				metrics_fd = std::move(rec->fds[0]);
			} else if (t == "conn" && rec->fds.size() == 1) {
				PeerCredentials peer{j.at("pid").get<pid_t>(), j.at("uid").get<uid_t>(),
						     j.at("gid").get<gid_t>()};
				add_connection(j.at("id").get<std::uint64_t>(), std::move(rec->fds[0]), peer,
					       j.at("owner").get<std::string>(), j.at("inflight").get<std::size_t>(), false);
			} else if (t == "queued") {
				queued[j.at("conn").get<std::uint64_t>()].push_back(
					{j.at("data").get<std::string>(), std::move(rec->fds)});
			} else if (t == "mail") {
				auto ttl = std::chrono::milliseconds(j.at("ttl_ms").get<std::int64_t>());
				(void)mailbox_.post(j.at("owner").get<std::string>(),
						    {j.at("data").get<std::string>(), std::move(rec->fds)},
						    Clock::now() + ttl);
			} else if (t == "items") {
				std::size_t next = 0;
				for (const auto &entry : j.at("items")) {
					items++;
					std::size_t n = entry.at("nfds").get<std::size_t>();
					if (next + n > rec->fds.size())
						fail_takeover("item " + std::to_string(items) + ": descriptors missing");
					std::vector<UniqueFd> fds;
					for (std::size_t k = 0; k < n; k++)
						fds.push_back(std::move(rec->fds[next++]));
					auto r = service_->import_item({entry.at("record"), std::move(fds)});
					if (!r)
						fail_takeover("item " + std::to_string(items) + ": " + r.error());
				}
			} else if (t == "end") {
				if (j.at("items").get<std::size_t>() != items)
					fail_takeover("item count mismatch");
				tasks = j.value("tasks", items);
				break;
			} else {
				fail_takeover("unexpected record \"" + t + "\"");
			}
		} catch (const nlohmann::json::exception &e) {
			fail_takeover(std::string("malformed ") + t + " record: " + e.what());
		}
	}
	if (!listener_.is_valid())
		fail_takeover("no control socket was handed over");

	if (auto r = link.send({{"t", "ack"}, {"items", items}}, {}, deadline); !r)
		throw std::runtime_error("Failed to acknowledge the takeover: " + errno_name(r.error()));
	auto fin = link.recv(deadline);
	if (!fin || fin->json.value("t", "") != "finish")
		throw std::runtime_error("The running daemon did not let go; it keeps serving");

	/* Ours now. */
	predecessor_ = begin.value("old_pid", 0);
	generation_ = begin.value("generation", std::uint64_t{0}) + 1;
	started_wall_ = std::chrono::system_clock::time_point(
		std::chrono::milliseconds(begin.value("started_at_ms", std::int64_t{0})));
	started_ = Clock::now() - std::chrono::milliseconds(begin.value("uptime_ms", std::int64_t{0}));
	socket_inode_ = begin.value("socket_inode", ino_t{0});
	next_conn_ = begin.value("next_conn", std::uint64_t{1});
	upgrade_began_ms = begin.value("upgrade_began_ms", std::int64_t{0});
	if (begin.contains("counters")) {
		const auto &c = begin["counters"];
		counters_.connections = c.value("connections", std::uint64_t{0});
		counters_.requests = c.value("requests", std::uint64_t{0});
		counters_.errors = c.value("errors", std::uint64_t{0});
		counters_.denied = c.value("denied", std::uint64_t{0});
		counters_.busy = c.value("busy", std::uint64_t{0});
		counters_.results_lost = c.value("results_lost", std::uint64_t{0});
		counters_.mailbox_expired = c.value("mailbox_expired", std::uint64_t{0});
		counters_.upgrades_failed = c.value("upgrades_failed", std::uint64_t{0});
		if (c.contains("errors_by_code"))
			counters_.errors_by_code = c["errors_by_code"].get<std::map<std::string, std::uint64_t>>();
	}

	open_metrics(std::move(metrics_fd));
	start_common();
	for (auto &[id, c] : conns_) {
		start_connection(*c);
		for (OutMessage &m : queued[id])
			send_to(*c, std::move(m));
	}
	service_->resume_imported();
	start_listening();

	std::int64_t took = wall_ms() - upgrade_began_ms;
	log_->info("Took over from pid {} (upgrade {}): {} clients, {} mailbox results, {} tasks in {} ms",
		   predecessor_, generation_, conns_.size(), mailbox_.messages(), tasks, took);
	notify_status("serving (upgrade " + std::to_string(generation_) + ")");

	if (begin.contains("requester")) {
		std::uint64_t conn = begin["requester"].value("conn", std::uint64_t{0});
		if (Connection *c = find(conn))
			send_to(*c, {proto::encode_message(begin["requester"].value("id", std::string{}), "handed_over",
							   {{"old_pid", predecessor_},
							    {"new_pid", ::getpid()},
							    {"tasks", tasks},
							    {"duration_ms", took}}),
				     {}});
	}
}

} // namespace shoal::service
