// The namespace helper: unshares a user+network namespace, builds the TUN and listeners in it, sends their fds.
#include "netns.h"
#include "netns_detail.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <memory>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include <linux/if_addr.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <shoal/fdpass/message.h>

namespace shoal::bumblebee {

namespace {

using detail::errno_text;
using detail::IpPrefix;

/* libnl's objects, each released by its own put/free. */
struct NlSockDelete {
	void operator()(nl_sock *s) const { nl_socket_free(s); }
};
struct LinkDelete {
	void operator()(rtnl_link *l) const { rtnl_link_put(l); }
};
struct AddrDelete {
	void operator()(rtnl_addr *a) const { rtnl_addr_put(a); }
};
struct NlAddrDelete {
	void operator()(nl_addr *a) const { nl_addr_put(a); }
};
using NlSock = std::unique_ptr<nl_sock, NlSockDelete>;
using Link = std::unique_ptr<rtnl_link, LinkDelete>;
using Addr = std::unique_ptr<rtnl_addr, AddrDelete>;
using NlAddr = std::unique_ptr<nl_addr, NlAddrDelete>;

using Error = Unexpected<std::string>;
template <typename T>
using Outcome = Expected<T, std::string>;

Error fail(const std::string &what, int err)
{
	return Error(what + ": " + errno_text(err));
}

Error nl_fail(const std::string &what, int nlerr)
{
	return Error(what + ": " + nl_geterror(nlerr));
}

struct Built {
	UniqueFd tun;
	UniqueFd listener4;
	UniqueFd listener6;
	UniqueFd netns;
	UniqueFd userns;
};

Outcome<NetnsConfig> read_config(int sock)
{
	pollfd p{sock, POLLIN, 0};
	int n;
	do {
		n = ::poll(&p, 1, detail::kHelperTimeoutMs);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return fail("Failed to wait for the config", errno);
	if (n == 0)
		return Error("Failed to read the config: none arrived within " +
			     std::to_string(detail::kHelperTimeoutMs / 1000) + " s");
	auto m = recv_message(sock, kProtocolMaxMessage, 0);
	if (!m)
		return fail("Failed to read the config", m.error());
	if (m->error != 0)
		return fail("Failed to read the config", m->error);
	auto j = nlohmann::json::parse(m->data, nullptr, /*allow_exceptions=*/false);
	if (j.is_discarded())
		return Error("Failed to read the config: not valid JSON");
	try {
		return NetnsConfig::from_json(j);
	} catch (const std::invalid_argument &e) {
		return Error(std::string("Failed to read the config: ") + e.what());
	}
}

Outcome<void> write_file(const char *path, const std::string &text)
{
	UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
	if (!fd.is_valid())
		return fail(std::string("Failed to open ") + path, errno);
	ssize_t n = ::write(fd.get(), text.data(), text.size());
	if (n < 0)
		return fail(std::string("Failed to write \"") + text + "\" to " + path, errno);
	if (static_cast<std::size_t>(n) != text.size())
		return Error(std::string("Failed to write \"") + text + "\" to " + path + ": short write");
	return {};
}

/* The first line of a small file, without its newline; "" when unreadable. */
std::string read_line(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd.is_valid())
		return "";
	char buf[64];
	ssize_t n = ::read(fd.get(), buf, sizeof(buf));
	if (n <= 0)
		return "";
	std::string s(buf, static_cast<std::size_t>(n));
	return s.substr(0, s.find('\n'));
}

/*
 * Sets a sysctl of our namespace. /proc/sys/net shows the namespace of whoever opens it, so
 * these writes touch nothing outside. If /proc/sys is read-only (systemd's
 * ProtectKernelTunables=), a value that is already right is good enough.
 */
Outcome<void> set_sysctl(const std::string &path, const std::string &value)
{
	auto w = write_file(path.c_str(), value);
	if (w || read_line(path) == value)
		return {};
	return Error(w.error());
}

/* Maps root in the new user namespace onto whoever we were outside: all it ever needs. */
Outcome<void> map_ids(uid_t uid, gid_t gid)
{
	/* An unprivileged gid_map needs setgroups denied first; harmless as root. */
	if (auto r = write_file("/proc/self/setgroups", "deny"); !r)
		return r;
	if (auto r = write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1"); !r)
		return r;
	return write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
}

Outcome<UniqueFd> open_tun(const std::string &name)
{
	/*
	 * Opening the device is an ordinary permission check in the *root* namespace: fine as
	 * root, and for an unprivileged user only where /dev/net/tun has the usual mode 0666
	 * (under systemd, DeviceAllow= must admit it too). Creating the interface needs
	 * CAP_NET_ADMIN over the network namespace only, which our user namespace gives us.
	 */
	UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
	if (!fd.is_valid())
		return fail("Failed to open /dev/net/tun", errno);
	ifreq ifr{};
	std::memcpy(ifr.ifr_name, name.c_str(), name.size()); /* validated: < IFNAMSIZ */
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0)
		return fail("Failed to create TUN device " + name, errno);
	return fd;
}

/* Must run after the TUN exists (its conf directories appear with it) and before it is up. */
Outcome<void> set_sysctls(const NetnsConfig &cfg)
{
	/*
	 * rp_filter off, deliberately. Packets arrive on the TUN from NAT pool addresses that
	 * bumblebee itself assigns (so the source is guaranteed, nothing is spoofed), and a
	 * strict or loose reverse-path check - the effective value is the maximum of "all" and
	 * the device's - would drop them the moment a reply path is asymmetric. "default"
	 * covers anything created in here later.
	 */
	for (const char *dev : {"all", "default", cfg.tun_name.c_str()}) {
		if (auto r = set_sysctl(std::string("/proc/sys/net/ipv4/conf/") + dev + "/rp_filter", "0"); !r)
			return r;
	}

	std::string v6 = "/proc/sys/net/ipv6/conf/" + cfg.tun_name + "/";
	if (cfg.inet6.empty()) {
		/* No IPv6 wanted: no link-local address either. A kernel without IPv6 has no such file. */
		if (::access("/proc/sys/net/ipv6", F_OK) == 0)
			return set_sysctl(v6 + "disable_ipv6", "1");
		return {};
	}
	/*
	 * Nothing but NATed replies may leave the TUN: bumblebee reads every packet from it. No
	 * router solicitations (sent when accept_ra is on), no SLAAC addresses. DAD and MLD stay
	 * quiet by themselves: the TUN is IFF_NOARP, and our address is IFA_F_NODAD.
	 */
	if (auto r = set_sysctl(v6 + "accept_ra", "0"); !r)
		return r;
	return set_sysctl(v6 + "autoconf", "0");
}

Outcome<void> link_up(nl_sock *sk, const char *name, unsigned mtu, unsigned txqueuelen)
{
	rtnl_link *raw = nullptr;
	int err = rtnl_link_get_kernel(sk, 0, name, &raw);
	Link link(raw);
	if (err < 0)
		return nl_fail(std::string("Failed to find interface ") + name, err);
	Link change(rtnl_link_alloc());
	if (!change)
		return fail("Failed to allocate a link change", ENOMEM);
	if (mtu)
		rtnl_link_set_mtu(change.get(), mtu);
	if (txqueuelen)
		rtnl_link_set_txqlen(change.get(), txqueuelen);
	rtnl_link_set_flags(change.get(), IFF_UP);
	err = rtnl_link_change(sk, link.get(), change.get(), 0);
	if (err < 0)
		return nl_fail(std::string("Failed to configure interface ") + name +
				       (mtu ? " (mtu " + std::to_string(mtu) + ", txqueuelen " +
						      std::to_string(txqueuelen) + ", up)"
					    : " (up)"),
			       err);
	return {};
}

Outcome<void> add_address(nl_sock *sk, const std::string &ifname, const std::string &prefix, int family,
			  unsigned flags)
{
	rtnl_link *raw = nullptr;
	int err = rtnl_link_get_kernel(sk, 0, ifname.c_str(), &raw);
	Link link(raw);
	if (err < 0)
		return nl_fail("Failed to find interface " + ifname, err);

	nl_addr *raw_local = nullptr;
	err = nl_addr_parse(prefix.c_str(), family, &raw_local);
	NlAddr local(raw_local);
	if (err < 0)
		return nl_fail("Failed to parse address " + prefix, err);

	Addr addr(rtnl_addr_alloc());
	if (!addr)
		return fail("Failed to allocate an address", ENOMEM);
	rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link.get()));
	err = rtnl_addr_set_local(addr.get(), local.get());
	if (err < 0)
		return nl_fail("Failed to set address " + prefix, err);
	rtnl_addr_set_prefixlen(addr.get(), static_cast<int>(nl_addr_get_prefixlen(local.get())));
	if (flags)
		rtnl_addr_set_flags(addr.get(), flags);
	err = rtnl_addr_add(sk, addr.get(), 0);
	if (err < 0)
		return nl_fail("Failed to add address " + prefix + " to " + ifname, err);
	return {};
}

/* True once the local table routes `address` to this host (RTN_LOCAL). */
bool is_local_route(nl_sock *sk, const nl_addr *address)
{
	nl_cache *raw = nullptr;
	if (rtnl_route_alloc_cache(sk, AF_INET6, 0, &raw) < 0)
		return false;
	std::unique_ptr<nl_cache, void (*)(nl_cache *)> cache(raw, nl_cache_free);
	for (nl_object *o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
		auto *route = reinterpret_cast<rtnl_route *>(o);
		nl_addr *dst = rtnl_route_get_dst(route);
		if (rtnl_route_get_table(route) == RT_TABLE_LOCAL && rtnl_route_get_type(route) == RTN_LOCAL && dst &&
		    nl_addr_get_prefixlen(dst) == 128 && nl_addr_get_len(dst) == 16 &&
		    std::memcmp(nl_addr_get_binary_addr(dst), nl_addr_get_binary_addr(address), 16) == 0)
			return true;
	}
	return false;
}

/*
 * The kernel installs an IPv6 address's local route from its DAD work queue, even with
 * IFA_F_NODAD: until then a SYN to the listener is not local and is dropped without a trace
 * (seen under load as a first handshake that never answers). Wait for it, for up to 5 s.
 */
Outcome<void> wait_for_local_route(nl_sock *sk, const std::string &prefix)
{
	nl_addr *raw = nullptr;
	int err = nl_addr_parse(prefix.c_str(), AF_INET6, &raw);
	NlAddr address(raw);
	if (err < 0)
		return nl_fail("Failed to parse address " + prefix, err);
	for (int i = 0; i < 1000; i++) {
		if (is_local_route(sk, address.get()))
			return {};
		::usleep(5000);
	}
	return fail("Failed to see the local route of " + prefix + " within 5 s", ETIMEDOUT);
}

Outcome<void> configure_links(const NetnsConfig &cfg)
{
	NlSock sk(nl_socket_alloc());
	if (!sk)
		return fail("Failed to allocate a netlink socket", ENOMEM);
	/* Created after unshare(), so it speaks to our namespace. */
	int err = nl_connect(sk.get(), NETLINK_ROUTE);
	if (err < 0)
		return nl_fail("Failed to connect to rtnetlink", err);

	/* A new namespace's lo is down; local traffic (and the kernel's own) expects it up. */
	if (auto r = link_up(sk.get(), "lo", 0, 0); !r)
		return r;
	if (auto r = link_up(sk.get(), cfg.tun_name.c_str(), cfg.mtu, cfg.txqueuelen); !r)
		return r;
	if (auto r = add_address(sk.get(), cfg.tun_name, cfg.inet4, AF_INET, 0); !r)
		return r;
	/* No DAD: the address is ours alone, and must be bindable the moment it exists. */
	if (!cfg.inet6.empty()) {
		if (auto r = add_address(sk.get(), cfg.tun_name, cfg.inet6, AF_INET6, IFA_F_NODAD); !r)
			return r;
		if (auto r = wait_for_local_route(sk.get(), cfg.inet6); !r)
			return r;
	}
	return {};
}

Outcome<UniqueFd> listen_on(const IpPrefix &p, const NetnsConfig &cfg)
{
	std::string where = detail::format_endpoint(p, cfg.port);
	UniqueFd fd(::socket(p.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd.is_valid())
		return fail("Failed to create the listener for " + where, errno);
	int one = 1;
	/* A successor may rebind the port while old connections linger in TIME_WAIT. */
	if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
		return fail("Failed to set SO_REUSEADDR on the listener for " + where, errno);

	sockaddr_storage ss{};
	socklen_t len;
	if (p.family == AF_INET) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_port = htons(cfg.port);
		std::memcpy(&sin->sin_addr, p.addr, 4);
		len = sizeof(*sin);
	} else {
		/* The v4 listener has IPv4; a dual-stack socket would fight it for the port. */
		if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
			return fail("Failed to set IPV6_V6ONLY on the listener for " + where, errno);
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(cfg.port);
		std::memcpy(&sin6->sin6_addr, p.addr, 16);
		len = sizeof(*sin6);
	}
	if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) != 0)
		return fail("Failed to bind the listener to " + where, errno);
	if (::listen(fd.get(), cfg.backlog) != 0)
		return fail("Failed to listen on " + where, errno);
	return fd;
}

Outcome<UniqueFd> open_ns(const char *path)
{
	UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
	if (!fd.is_valid())
		return fail(std::string("Failed to open ") + path, errno);
	return fd;
}

Outcome<Built> build(const NetnsConfig &cfg)
{
	/* Outside ids, read before unshare(): inside they are the overflow id until mapped. */
	uid_t uid = ::geteuid();
	gid_t gid = ::getegid();
	if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
		return fail("Failed to unshare a user and network namespace", errno);
	if (auto r = map_ids(uid, gid); !r)
		return Error(r.error());

	Built b;
	auto tun = open_tun(cfg.tun_name);
	if (!tun)
		return Error(tun.error());
	b.tun = std::move(*tun);
	if (auto r = set_sysctls(cfg); !r)
		return Error(r.error());
	if (auto r = configure_links(cfg); !r)
		return Error(r.error());

	/* Both parse: from_json() validated them. */
	auto l4 = listen_on(*detail::parse_prefix(cfg.inet4, AF_INET), cfg);
	if (!l4)
		return Error(l4.error());
	b.listener4 = std::move(*l4);
	if (!cfg.inet6.empty()) {
		auto l6 = listen_on(*detail::parse_prefix(cfg.inet6, AF_INET6), cfg);
		if (!l6)
			return Error(l6.error());
		b.listener6 = std::move(*l6);
	}

	auto net = open_ns("/proc/self/ns/net");
	if (!net)
		return Error(net.error());
	b.netns = std::move(*net);
	auto user = open_ns("/proc/self/ns/user");
	if (!user)
		return Error(user.error());
	b.userns = std::move(*user);
	return b;
}

/* Parses argv[2]: a plain non-negative decimal descriptor number. */
int parse_fd(const char *s)
{
	if (!s || !*s || std::strlen(s) > 9)
		return -1;
	int fd = 0;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		fd = fd * 10 + (*c - '0');
	}
	return fd;
}

} // namespace

int netns_helper_main(int argc, char **argv)
{
	int fd = argc == 3 && std::strcmp(argv[1], kNetnsHelperArg) == 0 ? parse_fd(argv[2]) : -1;
	int type = 0;
	socklen_t len = sizeof(type);
	if (fd < 0 || ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
		/* Nobody to tell but a person who ran it by hand. */
		std::fprintf(stderr, "%s: internal helper of bumblebee; usage: %s %s FD (a SOCK_SEQPACKET socket)\n",
			     argc > 0 ? argv[0] : "bumblebee", argc > 0 ? argv[0] : "bumblebee", kNetnsHelperArg);
		return 2;
	}
	UniqueFd sock(fd);
	/* Ours alone from here: nothing we might start should inherit it. */
	::fcntl(sock.get(), F_SETFD, FD_CLOEXEC);

	auto cfg = read_config(sock.get());
	Outcome<Built> built = cfg ? build(*cfg) : Outcome<Built>(Error(cfg.error()));
	if (!built) {
		/* If even this fails, the caller sees our exit status and a closed socket. */
		(void)send_message(sock.get(), nlohmann::json{{"error", built.error()}}.dump());
		return 1;
	}

	std::vector<int> fds = {built->tun.get(), built->listener4.get()};
	nlohmann::json names = nlohmann::json::array({detail::kFdTun, detail::kFdListener4});
	if (built->listener6.is_valid()) {
		fds.push_back(built->listener6.get());
		names.push_back(detail::kFdListener6);
	}
	fds.push_back(built->netns.get());
	names.push_back(detail::kFdNetns);
	fds.push_back(built->userns.get());
	names.push_back(detail::kFdUserns);
	auto sent = send_message(sock.get(), nlohmann::json{{"fds", names}}.dump(), fds);
	return sent ? 0 : 1;
}

} // namespace shoal::bumblebee
