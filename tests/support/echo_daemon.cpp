// shoal-echod: the smallest real service on the runtime (echoes on sockets it is handed); tests drive the runtime through it.
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>

#include <shoal/fdpass/socket_info.h>
#include <shoal/service/config.h>
#include <shoal/service/log.h>
#include <shoal/service/metrics.h>
#include <shoal/service/runtime.h>

#include "shoal_version.h"

namespace {

using namespace shoal;
using namespace shoal::service;
using proto::ErrorCode;

std::string to_hex(const std::string &s)
{
	static const char *digits = "0123456789abcdef";
	std::string out;
	for (unsigned char c : s) {
		out += digits[c >> 4];
		out += digits[c & 15];
	}
	return out;
}

std::string from_hex(const std::string &h)
{
	std::string out;
	for (std::size_t i = 0; i + 1 < h.size(); i += 2)
		out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
	return out;
}

class EchoService;

struct Sleeper {
	EchoService *self;
	Call call;
	uv_timer_t timer;
};

/* One socket being echoed: whatever arrives is written back, in order. */
struct EchoTask {
	EchoService *service = nullptr;
	std::string task;
	ClientRef client;
	std::string request_id;
	nlohmann::json metadata;
	UniqueFd sock;
	uv_poll_t *poll = nullptr;
	std::string pending; /* read but not yet written back: part of the task's state */
	std::uint64_t bytes = 0;
};

class EchoService final : public Service {
public:
	std::vector<std::string> ops() const override { return {"echo", "cancel", "sleep"}; }

	void add_options(ConfigSchema &schema) override
	{
		schema.add({"max_tasks", 100000u, "sockets echoed at once; more are refused with busy",
			    "--max-tasks", "N"});
	}

	void init(Runtime &rt, const nlohmann::json &config) override
	{
		rt_ = &rt;
		max_tasks_ = config["max_tasks"].get<std::size_t>();
	}

	void start() override {}

	void handle(Call call) override
	{
		const proto::Request &req = call.request;
		if (req.op == "sleep") {
			/* Answers after ms: lets tests hold requests in flight. */
			auto ms = req.body.value("ms", std::uint64_t{100});
			auto *sl = new Sleeper{this, std::move(call), {}};
			uv_timer_init(rt_->loop(), &sl->timer);
			sl->timer.data = sl;
			uv_timer_start(&sl->timer, [](uv_timer_t *h) {
				auto *sl = static_cast<Sleeper *>(h->data);
				sl->self->runtime().reply(sl->call.client, sl->call.request.id, "slept", nlohmann::json::object());
				uv_close(reinterpret_cast<uv_handle_t *>(h),
					 [](uv_handle_t *h) { delete static_cast<Sleeper *>(h->data); });
			}, ms, 0);
			return;
		}
		if (req.op == "cancel") {
			std::string task = req.body.value("task", "");
			auto it = tasks_.find(task);
			if (it == tasks_.end()) {
				rt_->fail(call.client, req.id, ErrorCode::not_found, "task: no task \"" + task + "\"");
				return;
			}
			rt_->reply(call.client, req.id, "cancelling", {{"task", task}});
			finish(it->second.get(), "cancelled");
			return;
		}
		for (const auto &[key, value] : req.body.items())
			if (key != "v" && key != "op" && key != "id" && key != "metadata") {
				rt_->fail(call.client, req.id, ErrorCode::bad_request, key + ": unknown field");
				return;
			}
		if (call.fds.size() != 1) {
			rt_->fail(call.client, req.id, ErrorCode::bad_fds,
				  "echo takes 1 fd, got " + std::to_string(call.fds.size()));
			return;
		}
		auto info = socket_info(call.fds[0].get());
		if (!info || info->listening || info->type == SOCK_DGRAM) {
			rt_->fail(call.client, req.id, ErrorCode::bad_fds, "fd 0: not a connected stream socket");
			return;
		}
		if (tasks_.size() >= max_tasks_) {
			rt_->fail(call.client, req.id, ErrorCode::busy, "task limit reached");
			return;
		}
		auto t = std::make_unique<EchoTask>();
		t->task = "e" + std::to_string(next_++);
		t->client = call.client;
		t->request_id = req.id;
		t->metadata = req.body.value("metadata", nlohmann::json());
		t->sock = std::move(call.fds[0]);
		EchoTask *raw = t.get();
		tasks_[t->task] = std::move(t);
		if (!watch(raw)) {
			rt_->fail(call.client, req.id, ErrorCode::internal, "cannot poll the socket");
			tasks_.erase(raw->task);
			return;
		}
		rt_->reply(call.client, req.id, "accepted", {{"task", raw->task}});
	}

	void fill_status(nlohmann::json &s) override { s["tasks"] = tasks_.size(); s["bytes"] = bytes_; }

	nlohmann::json list() override
	{
		nlohmann::json out = nlohmann::json::array();
		for (const auto &[id, t] : tasks_)
			out.push_back({{"task", id}, {"owner", t->client.owner}, {"bytes", t->bytes},
				       {"metadata", t->metadata}});
		return out;
	}

	void write_metrics(PrometheusWriter &w) override
	{
		w.gauge("echod_tasks", "sockets being echoed", static_cast<double>(tasks_.size()));
		w.counter("echod_bytes_total", "bytes echoed", static_cast<double>(bytes_));
	}

	void pause() override
	{
		for (auto &[id, t] : tasks_)
			if (t->poll)
				uv_poll_stop(t->poll);
	}

	void resume() override
	{
		for (auto &[id, t] : tasks_)
			update(t.get());
	}

	void export_items(const std::function<void(ExportItem)> &emit) override
	{
		emit({{{"kind", "state"}, {"next", next_}, {"bytes", bytes_}}, {}, false});
		for (auto &[id, t] : tasks_)
			emit({{{"kind", "task"}, {"task", id}, {"client", t->client.to_json()},
			       {"request_id", t->request_id}, {"metadata", t->metadata}, {"bytes", t->bytes},
			       {"pending", to_hex(t->pending)}},
			      {t->sock.get()}});
	}

	void abandon() override
	{
		while (!tasks_.empty())
			drop(tasks_.begin()->second.get());
	}

	Expected<void, std::string> import_item(ImportItem item) override
	{
		const nlohmann::json &r = item.record;
		if (r.value("kind", "") == "state") {
			next_ = r.value("next", std::uint64_t{1});
			bytes_ = r.value("bytes", std::uint64_t{0});
			return {};
		}
		if (item.fds.size() != 1)
			return Unexpected(std::string("a task record needs 1 fd"));
		auto t = std::make_unique<EchoTask>();
		t->task = r.at("task").get<std::string>();
		t->client = ClientRef::from_json(r.at("client"));
		t->request_id = r.value("request_id", "");
		t->metadata = r.value("metadata", nlohmann::json());
		t->bytes = r.value("bytes", std::uint64_t{0});
		t->pending = from_hex(r.value("pending", ""));
		t->sock = std::move(item.fds[0]);
		tasks_[t->task] = std::move(t);
		return {};
	}

	void resume_imported() override
	{
		for (auto it = tasks_.begin(); it != tasks_.end();) {
			EchoTask *t = (it++)->second.get();
			if (!watch(t))
				finish(t, "error");
		}
	}

	void shutdown() override
	{
		while (!tasks_.empty())
			finish(tasks_.begin()->second.get(), "shutdown");
	}

	Runtime &runtime() { return *rt_; }

private:
	bool watch(EchoTask *t)
	{
		t->service = this;
		t->poll = new uv_poll_t;
		if (uv_poll_init_socket(rt_->loop(), t->poll, t->sock.get()) < 0) {
			delete t->poll;
			t->poll = nullptr;
			return false;
		}
		t->poll->data = t;
		update(t);
		return true;
	}

	void update(EchoTask *t)
	{
		if (!t->poll)
			return;
		/* Reading stops while a write is pending: the socket buffers are the backpressure. */
		int events = t->pending.empty() ? UV_READABLE : UV_WRITABLE;
		uv_poll_start(t->poll, events, [](uv_poll_t *h, int status, int) {
			auto *t = static_cast<EchoTask *>(h->data);
			t->service->on_ready(t, status);
		});
	}

	void on_ready(EchoTask *t, int status)
	{
		if (status < 0) {
			finish(t, "error");
			return;
		}
		if (!t->pending.empty()) {
			ssize_t n = ::send(t->sock.get(), t->pending.data(), t->pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN) {
				finish(t, "error");
				return;
			}
			if (n > 0)
				t->pending.erase(0, static_cast<std::size_t>(n));
		} else {
			char buf[16384];
			ssize_t n = ::recv(t->sock.get(), buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0) {
				finish(t, "eof");
				return;
			}
			if (n < 0) {
				if (errno != EAGAIN)
					finish(t, "error");
				return;
			}
			t->bytes += static_cast<std::uint64_t>(n);
			bytes_ += static_cast<std::uint64_t>(n);
			t->pending.assign(buf, static_cast<std::size_t>(n));
		}
		update(t);
	}

	/* The task ends: its socket goes back to its owner with what happened. */
	void finish(EchoTask *t, const char *reason)
	{
		std::vector<UniqueFd> fds;
		fds.push_back(std::move(t->sock));
		ClientRef client = t->client;
		nlohmann::json fields = {{"task", t->task}, {"metadata", t->metadata}, {"reason", reason},
					 {"bytes", t->bytes}};
		std::string request_id = t->request_id;
		drop(t);
		rt_->deliver(client, "done", fields, std::move(fds), request_id);
	}

	void drop(EchoTask *t)
	{
		if (t->poll) {
			uv_poll_stop(t->poll);
			uv_close(reinterpret_cast<uv_handle_t *>(t->poll),
				 [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
			t->poll = nullptr;
		}
		tasks_.erase(t->task);
	}

	friend struct Sleeper;
	Runtime *rt_ = nullptr;
	std::map<std::string, std::unique_ptr<EchoTask>> tasks_;
	std::uint64_t next_ = 1;
	std::uint64_t bytes_ = 0;
	std::size_t max_tasks_ = 0;
};

} // namespace

int main(int argc, char **argv)
{
	ProgramInfo info{"shoal-echod", SHOAL_VERSION,
			 "echo every byte on sockets handed to it (the runtime's test service)",
			 "Ops: echo (1 fd: a connected stream socket; metadata) -> accepted {task}; "
			 "done {task, metadata, reason, bytes} with the fd when the peer closes; cancel {task}."};
	return run_daemon(info, std::make_unique<EchoService>(), argc, argv);
}
