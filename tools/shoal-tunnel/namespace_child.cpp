// The child that becomes PROGRAM: unshare, write its uid/gid maps, set up the network, hand over the TUN fd, exec.
#include "namespace_child.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shoal/fdpass/message.h>

namespace shoal::tunnel {

namespace {

constexpr char kGo[] = "go";
constexpr char kReady[] = "tun";
/* Setup in the child takes milliseconds; this bounds a wedged one. */
constexpr int kSetupTimeoutMs = 15000;

bool write_file(const char *path, const std::string &text)
{
	int fd = ::open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = ::write(fd, text.data(), text.size());
	int err = errno;
	::close(fd);
	errno = err;
	return n == static_cast<ssize_t>(text.size());
}

/* Tells the parent why setup failed; it prints the message and exits 125. */
[[noreturn]] void child_fail(int control, const std::string &message)
{
	std::string text = "error " + message;
	(void)send_message(control, text);
	::_exit(125);
}

/* Everything after fork(). The parent has no threads yet (no loop), so the child may allocate freely. */
[[noreturn]] void child_main(int control, pid_t parent, uid_t uid, gid_t gid, const ChildSpec &spec)
{
	/* If shoal-tunnel dies, PROGRAM has lost its network: tell it so instead of leaving it hanging. */
	::prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (::getppid() != parent)
		::_exit(125); /* it died before the line above took effect */
	/* Signal dispositions the parent set (SIG_IGN for SIGPIPE) must not reach PROGRAM. */
	::signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	::sigprocmask(SIG_SETMASK, &none, nullptr);

	int flags = CLONE_NEWNET;
	if (uid != 0)
		flags |= CLONE_NEWUSER;
	if (::unshare(flags) < 0)
		child_fail(control, std::string("unshare(") + (uid != 0 ? "CLONE_NEWUSER|" : "") +
					    "CLONE_NEWNET): " + std::strerror(errno));
	if (uid != 0) {
		/* Ourselves, as ourselves: PROGRAM keeps its uid; setup ran with the namespace's capabilities. */
		if (!write_file("/proc/self/setgroups", "deny") ||
		    !write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1") ||
		    !write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1"))
			child_fail(control, std::string("writing the user namespace's uid/gid maps: ") +
						    std::strerror(errno));
	}

	std::string error;
	UniqueFd tun = setup_network(spec.network, error);
	if (!tun.is_valid())
		child_fail(control, error);
	int fds[1] = {tun.get()};
	auto sent = send_message(control, kReady, fds);
	if (!sent)
		::_exit(125);
	tun.reset();

	/* Blocking wait for "go"; EOF means the parent gave up, and so do we. */
	char buf[16];
	ssize_t n;
	do
		n = ::recv(control, buf, sizeof buf, 0);
	while (n < 0 && errno == EINTR);
	if (n != static_cast<ssize_t>(sizeof kGo - 1) || std::memcmp(buf, kGo, sizeof kGo - 1) != 0)
		::_exit(125);
	::close(control);

	::setrlimit(RLIMIT_NOFILE, &spec.nofile);
	/* PROGRAM inherits stdio and nothing else, whatever our own parent left open. */
	::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

	std::vector<char *> argv;
	for (const auto &a : spec.argv)
		argv.push_back(const_cast<char *>(a.c_str()));
	argv.push_back(nullptr);
	::execvp(argv[0], argv.data());
	int err = errno;
	std::fprintf(stderr, "shoal-tunnel: cannot run %s: %s\n", argv[0], std::strerror(err));
	::_exit(err == ENOENT ? 127 : 126);
}

void reap(pid_t pid)
{
	::kill(pid, SIGKILL);
	int status;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
}

} // namespace

NamespaceChild start_namespace_child(const ChildSpec &spec, std::string &error)
{
	NamespaceChild child;
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		error = std::string("socketpair: ") + std::strerror(errno);
		return child;
	}
	UniqueFd ours(sv[0]), theirs(sv[1]);
	const pid_t parent = ::getpid();
	const uid_t uid = ::geteuid();
	const gid_t gid = ::getegid();
	pid_t pid = ::fork();
	if (pid < 0) {
		error = std::string("fork: ") + std::strerror(errno);
		return child;
	}
	if (pid == 0) {
		ours.reset();
		child_main(theirs.get(), parent, uid, gid, spec);
	}
	theirs.reset();

	pollfd p{ours.get(), POLLIN, 0};
	int rc;
	do
		rc = ::poll(&p, 1, kSetupTimeoutMs);
	while (rc < 0 && errno == EINTR);
	if (rc <= 0) {
		error = "the namespace child did not finish its setup";
		reap(pid);
		return child;
	}
	auto msg = recv_message(ours.get(), 4096, 1);
	if (!msg) {
		error = "the namespace child died during setup";
		reap(pid);
		return child;
	}
	if (msg->data.rfind("error ", 0) == 0 || msg->data != kReady || msg->fds.size() != 1) {
		error = msg->data.rfind("error ", 0) == 0 ? msg->data.substr(6)
							  : "the namespace child sent something unexpected";
		reap(pid);
		return child;
	}
	child.tun = std::move(msg->fds[0]);
	/*
	 * Hold the namespace: when PROGRAM exits, its closing connections still need the stack
	 * (FIN, last ACKs) while we drain. Best effort: without it we only drain less.
	 */
	std::string ns = "/proc/" + std::to_string(pid) + "/ns/net";
	child.netns.reset(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
	child.pid = pid;
	child.control = std::move(ours);
	return child;
}

bool release_child(NamespaceChild &child)
{
	if (!child.control.is_valid())
		return false;
	auto r = send_message(child.control.get(), kGo);
	child.control.reset();
	return static_cast<bool>(r);
}

} // namespace shoal::tunnel
