// Client: blocking request/reply over a shoal control socket, keeping events that arrive in between.
#include "client.h"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <shoal/fdpass/message.h>

namespace shoal {

Result<Client> Client::connect(const std::string &path)
{
	UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!sock.is_valid())
		return errno_error(errno);
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (path.size() >= sizeof(addr.sun_path))
		return errno_error(ENAMETOOLONG);
	std::memcpy(addr.sun_path, path.data(), path.size());
	if (::connect(sock.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0)
		return errno_error(errno);
	return Client(std::move(sock));
}

Result<std::string> Client::send(const std::string &op, const nlohmann::json &fields, std::span<const int> fds)
{
	std::string id = std::to_string(::getpid()) + "-" + std::to_string(next_id_++);
	nlohmann::json j = {{"v", 1}, {"op", op}, {"id", id}};
	if (fields.is_object())
		for (const auto &[k, v] : fields.items())
			j[k] = v;
	if (auto r = send_raw(j.dump(), fds); !r)
		return errno_error(r.error());
	return id;
}

Result<void> Client::send_raw(std::string_view bytes, std::span<const int> fds)
{
	for (;;) {
		auto r = send_message(sock_.get(), bytes, fds);
		if (r || r.error() != EAGAIN)
			return r;
		pollfd p{sock_.get(), POLLOUT, 0};
		::poll(&p, 1, 1000);
	}
}

Result<ClientMessage> Client::receive(std::chrono::milliseconds timeout)
{
	auto deadline = Clock::now() + timeout;
	for (;;) {
		auto r = recv_message(sock_.get());
		if (r) {
			ClientMessage m;
			m.json = nlohmann::json::parse(r->data, nullptr, false);
			if (m.json.is_discarded() || r->error)
				return errno_error(EBADMSG);
			m.fds = std::move(r->fds);
			return m;
		}
		if (r.error() != EAGAIN)
			return errno_error(r.error());
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		if (left.count() <= 0)
			return errno_error(ETIMEDOUT);
		pollfd p{sock_.get(), POLLIN, 0};
		::poll(&p, 1, static_cast<int>(left.count()));
	}
}

Result<ClientMessage> Client::wait_reply(const std::string &id, std::chrono::milliseconds timeout)
{
	for (auto it = pending_.begin(); it != pending_.end(); ++it) {
		if (it->json.value("id", nlohmann::json()) == id) {
			ClientMessage m = std::move(*it);
			pending_.erase(it);
			return m;
		}
	}
	auto deadline = Clock::now() + timeout;
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		auto r = receive(std::max(left, std::chrono::milliseconds(0)));
		if (!r)
			return r;
		const nlohmann::json &rid = r->json.contains("id") ? r->json["id"] : nlohmann::json();
		/* Replies match by id; errors to unparseable requests carry a null id. */
		bool is_event = r->op() == "done" || r->op() == "ended" || r->op() == "syn" || r->op() == "lease_ended";
		if (!is_event && (rid == id || (r->is_error() && rid.is_null())))
			return r;
		pending_.push_back(std::move(*r));
	}
}

Result<ClientMessage> Client::next_event(std::chrono::milliseconds timeout)
{
	if (!pending_.empty()) {
		ClientMessage m = std::move(pending_.front());
		pending_.erase(pending_.begin());
		return m;
	}
	return receive(timeout);
}

Result<ClientMessage> Client::call(const std::string &op, const nlohmann::json &fields, std::span<const int> fds,
				   std::chrono::milliseconds timeout)
{
	auto id = send(op, fields, fds);
	if (!id)
		return errno_error(id.error());
	return wait_reply(*id, timeout);
}

} // namespace shoal
