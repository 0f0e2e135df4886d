// create_netns(): starts the namespace helper, hands it the config and takes back its descriptors.
#include "netns.h"
#include "netns_detail.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <shoal/fdpass/message.h>
#include <shoal/fdpass/socket_info.h>

extern char **environ;

namespace shoal::bumblebee {

namespace {

using detail::errno_text;

/* At most five arrive; room for a few more so that a surplus is an error, not a truncation. */
constexpr std::size_t kMaxReplyFds = 8;

Unexpected<std::string> fail(std::string what)
{
	return Unexpected<std::string>(std::move(what));
}

/*
 * The helper's pid until it has been reaped. Every early return kills and reaps it, so no
 * path leaves a process (or a zombie) behind, and no wait outlasts the deadline.
 */
class Helper {
public:
	Helper(pid_t pid, std::chrono::steady_clock::time_point deadline) : pid_(pid), deadline_(deadline) {}
	Helper(const Helper &) = delete;
	Helper &operator=(const Helper &) = delete;
	~Helper()
	{
		if (pid_ > 0)
			kill_and_reap();
	}

	/*
	 * Waits for the helper to exit (it does so right after its reply), killing it at the
	 * deadline; "" for exit status 0, else what became of it.
	 */
	std::string reap()
	{
		/*
		 * A pidfd turns the wait into a poll with a timeout; without one, wait blocking.
		 * The raw syscall: Debian 12's <sys/pidfd.h> lacks extern "C".
		 */
		UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
		while (pidfd.is_valid()) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				deadline_ - std::chrono::steady_clock::now());
			if (left.count() <= 0) {
				::kill(pid_, SIGKILL);
				break;
			}
			pollfd p{pidfd.get(), POLLIN, 0};
			int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
			if (n > 0 || (n < 0 && errno != EINTR))
				break;
		}

		int status = 0;
		pid_t r;
		do {
			r = ::waitpid(pid_, &status, 0);
		} while (r < 0 && errno == EINTR);
		pid_ = -1;
		if (r < 0) {
			/* ECHILD: SIGCHLD is ignored, so the kernel reaped it and kept no status. */
			return errno == ECHILD ? "" : "waitpid failed: " + errno_text(errno);
		}
		if (WIFEXITED(status))
			return WEXITSTATUS(status) == 0 ? ""
							: "the helper exited with status " +
								  std::to_string(WEXITSTATUS(status));
		if (WIFSIGNALED(status))
			return "the helper was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
			       sigabbrev(WTERMSIG(status)) + ")";
		return "the helper ended with wait status " + std::to_string(status);
	}

	/* For when we no longer expect anything from it. */
	std::string kill_and_reap()
	{
		::kill(pid_, SIGKILL);
		return reap();
	}

private:
	static std::string sigabbrev(int sig)
	{
		const char *name = ::sigabbrev_np(sig);
		return name ? std::string("SIG") + name : "?";
	}

	pid_t pid_;
	std::chrono::steady_clock::time_point deadline_;
};

/* posix_spawn's attribute objects, destroyed on every path. */
struct SpawnSetup {
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	SpawnSetup()
	{
		::posix_spawn_file_actions_init(&actions);
		::posix_spawnattr_init(&attr);
	}
	~SpawnSetup()
	{
		::posix_spawn_file_actions_destroy(&actions);
		::posix_spawnattr_destroy(&attr);
	}
	SpawnSetup(const SpawnSetup &) = delete;
	SpawnSetup &operator=(const SpawnSetup &) = delete;
};

/*
 * Starts the helper with `theirs` as its descriptor `target`. posix_spawn (vfork+exec inside
 * glibc) rather than a bare fork: it is safe in a multi-threaded daemon, cheap however large
 * our address space is, and it returns exec's errno. dup2 onto another number is what makes
 * the descriptor inheritable in the child alone; everything above it is closed, so the
 * helper holds nothing of ours but stdio and this socket.
 */
Expected<pid_t, std::string> spawn_helper(const std::string &binary, int theirs, int target)
{
	SpawnSetup s;
	std::string fd_arg = std::to_string(target);
	int rc = ::posix_spawn_file_actions_adddup2(&s.actions, theirs, target);
	if (rc == 0)
		rc = ::posix_spawn_file_actions_addclosefrom_np(&s.actions, target + 1);
	/* A fresh signal state: our mask and ignored signals are the daemon's business. */
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	if (rc == 0)
		rc = ::posix_spawnattr_setsigmask(&s.attr, &none);
	if (rc == 0)
		rc = ::posix_spawnattr_setsigdefault(&s.attr, &all);
	if (rc == 0)
		rc = ::posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (rc != 0)
		return fail("Failed to prepare the netns helper's start: " + errno_text(rc));

	std::vector<char *> argv = {
		const_cast<char *>(binary.c_str()),
		const_cast<char *>(kNetnsHelperArg),
		fd_arg.data(),
		nullptr,
	};
	pid_t pid = -1;
	rc = ::posix_spawn(&pid, binary.c_str(), &s.actions, &s.attr, argv.data(), environ);
	if (rc != 0)
		return fail("Failed to start the netns helper " + binary + ": " + errno_text(rc));
	return pid;
}

/* Waits up to the deadline for one datagram; EAGAIN when the time is up. */
Result<ReceivedMessage> recv_reply(int sock, std::chrono::steady_clock::time_point deadline)
{
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
			deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return errno_error(EAGAIN);
		pollfd p{sock, POLLIN, 0};
		int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
		if (n < 0 && errno != EINTR)
			return errno_error(errno);
		if (n <= 0)
			continue;
		auto m = recv_message(sock, kProtocolMaxMessage, kMaxReplyFds);
		if (!m && m.error() == EAGAIN)
			continue;
		return m;
	}
}

/* The helper's claim, checked: the right kind of descriptor under each name. */
std::string check_kind(const char *name, int fd)
{
	if (std::string_view(name) == detail::kFdTun) {
		struct stat st;
		if (::fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode))
			return "the tun descriptor is not a character device";
		return "";
	}
	if (std::string_view(name) == detail::kFdListener4 || std::string_view(name) == detail::kFdListener6) {
		auto info = socket_info(fd);
		if (!info || info->type != SOCK_STREAM || !info->listening)
			return std::string("the ") + name + " descriptor is not a listening TCP socket";
	}
	return "";
}

} // namespace

Expected<Netns, std::string> create_netns(const NetnsConfig &cfg, const std::string &helper_binary)
{
	cfg.validate();

	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return fail("Failed to create a socketpair for the netns helper: " + errno_text(errno));
	UniqueFd ours(sv[0]);
	UniqueFd theirs(sv[1]);

	/* Descriptor 3 in the helper, unless it already is 3 here: dup2(3, 3) would keep close-on-exec. */
	int target = theirs.get() == 3 ? 4 : 3;
	auto pid = spawn_helper(helper_binary, theirs.get(), target);
	if (!pid)
		return fail(std::move(pid.error()));
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(detail::kHelperTimeoutMs);
	Helper helper(*pid, deadline);
	theirs.reset();

	const std::string prefix = "Failed to set up the network namespace: ";
	auto sent = send_message(ours.get(), cfg.to_json().dump());
	if (!sent) {
		/* EPIPE or ECONNRESET: it is gone already, and how it went says more. */
		bool gone = sent.error() == EPIPE || sent.error() == ECONNRESET;
		std::string what = gone ? helper.reap() : helper.kill_and_reap();
		return fail("Failed to send the netns helper its config: " + errno_text(sent.error()) +
			    (what.empty() ? "" : " (" + what + ")"));
	}

	auto reply = recv_reply(ours.get(), deadline);
	if (!reply) {
		if (reply.error() == EAGAIN) {
			helper.kill_and_reap();
			return fail(prefix + "the helper did not answer within " +
				    std::to_string(detail::kHelperTimeoutMs / 1000) + " s and was killed");
		}
		if (reply.error() == EPIPE || reply.error() == ECONNRESET) {
			/*
			 * It closed its end without a word (ECONNRESET: leaving our config unread):
			 * it crashed, or is not our helper.
			 */
			std::string what = helper.reap();
			return fail(prefix + (what.empty() ? "the helper exited without a reply"
							   : what + " without a reply"));
		}
		std::string err = errno_text(reply.error());
		helper.kill_and_reap();
		return fail("Failed to read the netns helper's reply: " + err);
	}
	ReceivedMessage &m = *reply;
	if (m.error != 0) {
		helper.kill_and_reap();
		return fail(prefix + "the helper's reply was unusable: " + errno_text(m.error));
	}

	auto j = nlohmann::json::parse(m.data, nullptr, /*allow_exceptions=*/false);
	std::string what = helper.reap();
	if (j.is_object() && j.contains("error") && j["error"].is_string())
		return fail(prefix + j["error"].get<std::string>());
	if (!j.is_object() || !j.contains("fds") || !j["fds"].is_array())
		return fail(prefix + "the helper's reply was not understood");
	if (!what.empty())
		return fail(prefix + what);

	const auto &names = j["fds"];
	if (names.size() != m.fds.size())
		return fail(prefix + "the helper named " + std::to_string(names.size()) + " descriptors but sent " +
			    std::to_string(m.fds.size()));

	Netns ns;
	for (std::size_t i = 0; i < names.size(); i++) {
		if (!names[i].is_string())
			return fail(prefix + "the helper's reply was not understood");
		std::string name = names[i].get<std::string>();
		UniqueFd *slot = name == detail::kFdTun         ? &ns.tun
				 : name == detail::kFdListener4 ? &ns.listener4
				 : name == detail::kFdListener6 ? &ns.listener6
				 : name == detail::kFdNetns     ? &ns.netns
				 : name == detail::kFdUserns    ? &ns.userns
								: nullptr;
		if (!slot || slot->is_valid())
			return fail(prefix + "the helper sent an unexpected descriptor \"" + name + "\"");
		std::string kind = check_kind(name.c_str(), m.fds[i].get());
		if (!kind.empty())
			return fail(prefix + kind);
		*slot = std::move(m.fds[i]);
	}
	if (!ns.tun.is_valid() || !ns.listener4.is_valid() || !ns.netns.is_valid() || !ns.userns.is_valid() ||
	    ns.listener6.is_valid() == cfg.inet6.empty())
		return fail(prefix + "the helper's reply lacked a descriptor");
	return ns;
}

} // namespace shoal::bumblebee
