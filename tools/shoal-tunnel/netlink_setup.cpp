// Inside the new network namespace: sysctls, /dev/net/tun, and rtnetlink (libnl-route-3) for links, addresses, routes.
#include "netlink_setup.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <net/if.h> /* before the linux/ headers: glibc's IFF_* and ifreq */
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

namespace shoal::tunnel {

namespace {

constexpr const char *kTunName = "tun0";

/* Writes a sysctl of this namespace; false (errno set) when it is missing or refused. */
bool write_sysctl(const std::string &path, const char *value)
{
	int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = ::write(fd, value, std::strlen(value));
	int err = errno;
	::close(fd);
	errno = err;
	return n == static_cast<ssize_t>(std::strlen(value));
}

/*
 * Without these a fresh interface sends DAD probes, router solicitations and MLD reports
 * for its link-local address: packets PROGRAM never sent, which would reach the flow
 * table. addr_gen_mode 1 (none) means tun0 gets no link-local address at all; the
 * default route needs none on a point-to-point device.
 */
void quiet_ipv6(const std::string &conf)
{
	const std::string base = "/proc/sys/net/ipv6/conf/" + conf + "/";
	write_sysctl(base + "accept_dad", "0");
	write_sysctl(base + "dad_transmits", "0");
	write_sysctl(base + "router_solicitations", "0");
	write_sysctl(base + "accept_ra", "0");
	write_sysctl(base + "addr_gen_mode", "1");
}

/* One libnl socket for the whole setup; everything it allocated is freed on return. */
class Netlink {
public:
	Netlink() : sock_(nl_socket_alloc()) {}
	~Netlink()
	{
		if (sock_)
			nl_socket_free(sock_);
	}
	Netlink(const Netlink &) = delete;
	Netlink &operator=(const Netlink &) = delete;

	bool connect(std::string &error)
	{
		if (!sock_) {
			error = "netlink: out of memory";
			return false;
		}
		int rc = nl_connect(sock_, NETLINK_ROUTE);
		if (rc < 0) {
			error = std::string("netlink: ") + nl_geterror(rc);
			return false;
		}
		return true;
	}

	/* Sets flags (and, when non-zero, the MTU and queue length) of one link. */
	bool change_link(int ifindex, unsigned set_flags, unsigned clear_flags, unsigned mtu,
			 unsigned txqlen, std::string &error)
	{
		rtnl_link *orig = nullptr;
		int rc = rtnl_link_get_kernel(sock_, ifindex, nullptr, &orig);
		if (rc < 0) {
			error = std::string("netlink: link ") + std::to_string(ifindex) + ": " + nl_geterror(rc);
			return false;
		}
		rtnl_link *change = rtnl_link_alloc();
		if (set_flags)
			rtnl_link_set_flags(change, set_flags);
		if (clear_flags)
			rtnl_link_unset_flags(change, clear_flags);
		if (mtu)
			rtnl_link_set_mtu(change, mtu);
		if (txqlen)
			rtnl_link_set_txqlen(change, txqlen);
		rc = rtnl_link_change(sock_, orig, change, 0);
		rtnl_link_put(change);
		rtnl_link_put(orig);
		if (rc < 0) {
			error = std::string("netlink: changing link ") + std::to_string(ifindex) + ": " +
				nl_geterror(rc);
			return false;
		}
		return true;
	}

	bool add_address(int ifindex, const InterfaceAddress &a, std::string &error)
	{
		nl_addr *local = nullptr;
		int rc = nl_addr_parse(a.text().c_str(), a.family, &local);
		if (rc < 0) {
			error = "netlink: address " + a.text() + ": " + nl_geterror(rc);
			return false;
		}
		rtnl_addr *addr = rtnl_addr_alloc();
		rtnl_addr_set_ifindex(addr, ifindex);
		rtnl_addr_set_family(addr, a.family);
		rc = rtnl_addr_set_local(addr, local);
		if (rc >= 0) {
			rtnl_addr_set_prefixlen(addr, static_cast<int>(a.prefix));
			/* nodad: the address is usable at once and no probe leaves through tun0. */
			if (a.family == AF_INET6)
				rtnl_addr_set_flags(addr, IFA_F_NODAD);
			rc = rtnl_addr_add(sock_, addr, 0);
		}
		rtnl_addr_put(addr);
		nl_addr_put(local);
		if (rc < 0) {
			error = "netlink: adding " + a.text() + " to " + kTunName + ": " + nl_geterror(rc);
			return false;
		}
		return true;
	}

	bool add_default_route(int ifindex, int family, std::string &error)
	{
		nl_addr *dst = nullptr;
		int rc = nl_addr_parse(family == AF_INET ? "0.0.0.0/0" : "::/0", family, &dst);
		if (rc < 0) {
			error = std::string("netlink: default route: ") + nl_geterror(rc);
			return false;
		}
		rtnl_route *route = rtnl_route_alloc();
		rtnl_route_set_family(route, static_cast<std::uint8_t>(family));
		rtnl_route_set_table(route, RT_TABLE_MAIN);
		rtnl_route_set_protocol(route, RTPROT_STATIC);
		rtnl_route_set_type(route, RTN_UNICAST);
		/* No gateway on a point-to-point device: IPv4 wants scope link, like `ip route add default dev`. */
		rtnl_route_set_scope(route, family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
		rc = rtnl_route_set_dst(route, dst);
		if (rc >= 0) {
			rtnl_nexthop *nh = rtnl_route_nh_alloc();
			rtnl_route_nh_set_ifindex(nh, ifindex);
			rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
			rc = rtnl_route_add(sock_, route, NLM_F_CREATE | NLM_F_EXCL);
		}
		rtnl_route_put(route);
		nl_addr_put(dst);
		if (rc < 0) {
			error = std::string("netlink: adding the default ") +
				(family == AF_INET ? "IPv4" : "IPv6") + " route via " + kTunName + ": " +
				nl_geterror(rc);
			return false;
		}
		return true;
	}

private:
	nl_sock *sock_;
};

} // namespace

UniqueFd setup_network(const NetworkSpec &spec, std::string &error)
{
	const bool have_ipv6 = ::access("/proc/sys/net/ipv6", F_OK) == 0;
	if (spec.inet6.enabled && !have_ipv6) {
		error = "IPv6 is disabled in this kernel; use --inet6 none";
		return {};
	}
	/* Before tun0 exists, so it inherits them; "all" for the flags that are OR-ed with it. */
	if (have_ipv6) {
		quiet_ipv6("default");
		quiet_ipv6("all");
	}

	/* Non-blocking for the loop; close-on-exec so PROGRAM never holds its own tunnel. */
	UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
	if (!tun.is_valid()) {
		error = std::string("cannot open /dev/net/tun: ") + std::strerror(errno);
		return {};
	}
	ifreq ifr{};
	std::strncpy(ifr.ifr_name, kTunName, IFNAMSIZ - 1);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	if (::ioctl(tun.get(), TUNSETIFF, &ifr) < 0) {
		error = std::string("TUNSETIFF ") + kTunName + ": " + std::strerror(errno);
		return {};
	}
	int tun_index = static_cast<int>(::if_nametoindex(kTunName));
	int lo_index = static_cast<int>(::if_nametoindex("lo"));
	if (tun_index <= 0 || lo_index <= 0) {
		error = std::string("cannot find ") + (tun_index <= 0 ? kTunName : "lo") + ": " +
			std::strerror(errno);
		return {};
	}
	if (have_ipv6)
		quiet_ipv6(kTunName);

	Netlink nl;
	if (!nl.connect(error))
		return {};
	if (!nl.change_link(lo_index, IFF_UP, 0, 0, 0, error))
		return {};
	/*
	 * No IFF_MULTICAST: nothing on tun0 wants multicast, and without it the kernel has no
	 * group reports to send there.
	 */
	if (!nl.change_link(tun_index, IFF_UP, IFF_MULTICAST, spec.mtu, spec.txqueuelen, error))
		return {};
	for (const InterfaceAddress *a : {&spec.inet4, &spec.inet6}) {
		if (!a->enabled)
			continue;
		if (!nl.add_address(tun_index, *a, error))
			return {};
		if (!nl.add_default_route(tun_index, a->family, error))
			return {};
	}
	return tun;
}

} // namespace shoal::tunnel
