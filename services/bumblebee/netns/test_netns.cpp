// Tests of bumblebee's namespace helper: a real user+network namespace, a real TUN, real TCP handshakes through it.
#define CATCH_CONFIG_RUNNER
#include <catch.hpp>

#include "netns.h"

#include <arpa/inet.h>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <linux/if_tun.h>
#include <linux/nsfs.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <shoal/fdpass/message.h>

using namespace shoal;
using namespace shoal::bumblebee;

namespace {

/* ---- a tiny IPv4/IPv6 + TCP packet builder and parser, checksums included ---- */

struct Endpoint {
	int family = AF_INET;
	std::array<std::uint8_t, 16> addr{};
	std::uint16_t port = 0;
};

Endpoint endpoint(const char *ip, std::uint16_t port)
{
	Endpoint e;
	e.family = std::strchr(ip, ':') ? AF_INET6 : AF_INET;
	REQUIRE(::inet_pton(e.family, ip, e.addr.data()) == 1);
	e.port = port;
	return e;
}

std::size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

std::uint32_t sum16(const std::uint8_t *p, std::size_t n, std::uint32_t acc = 0)
{
	for (std::size_t i = 0; i + 1 < n; i += 2)
		acc += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
	if (n & 1)
		acc += static_cast<std::uint32_t>(p[n - 1] << 8);
	return acc;
}

std::uint16_t fold(std::uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return static_cast<std::uint16_t>(acc);
}

void put16(std::uint8_t *p, std::uint32_t v)
{
	p[0] = static_cast<std::uint8_t>(v >> 8);
	p[1] = static_cast<std::uint8_t>(v);
}

void put32(std::uint8_t *p, std::uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

std::uint32_t get16(const std::uint8_t *p)
{
	return static_cast<std::uint32_t>(p[0] << 8 | p[1]);
}

std::uint32_t get32(const std::uint8_t *p)
{
	return get16(p) << 16 | get16(p + 2);
}

/* The pseudo-header's share of a TCP checksum. */
std::uint32_t pseudo_sum(int family, const std::uint8_t *src, const std::uint8_t *dst, std::size_t tcp_len)
{
	std::uint32_t acc = sum16(src, addr_len(family));
	acc = sum16(dst, addr_len(family), acc);
	acc += IPPROTO_TCP;
	acc += static_cast<std::uint32_t>(tcp_len & 0xffff) + static_cast<std::uint32_t>(tcp_len >> 16);
	return acc;
}

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

std::vector<std::uint8_t> tcp_packet(const Endpoint &src, const Endpoint &dst, std::uint32_t seq, std::uint32_t ack,
				     std::uint8_t flags, const std::string &payload = "")
{
	bool syn = flags & kSyn;
	std::size_t tcp_hdr = syn ? 24 : 20; /* a SYN carries an MSS option */
	std::size_t tcp_len = tcp_hdr + payload.size();
	std::size_t ip_hdr = src.family == AF_INET ? 20 : 40;
	std::vector<std::uint8_t> p(ip_hdr + tcp_len, 0);

	if (src.family == AF_INET) {
		p[0] = 0x45;
		put16(&p[2], static_cast<std::uint32_t>(p.size()));
		put16(&p[4], 0x1234);
		put16(&p[6], 0x4000); /* DF */
		p[8] = 64;
		p[9] = IPPROTO_TCP;
		std::memcpy(&p[12], src.addr.data(), 4);
		std::memcpy(&p[16], dst.addr.data(), 4);
		put16(&p[10], static_cast<std::uint16_t>(~fold(sum16(p.data(), 20))));
	} else {
		p[0] = 0x60;
		put16(&p[4], static_cast<std::uint32_t>(tcp_len));
		p[6] = IPPROTO_TCP;
		p[7] = 64;
		std::memcpy(&p[8], src.addr.data(), 16);
		std::memcpy(&p[24], dst.addr.data(), 16);
	}

	std::uint8_t *t = &p[ip_hdr];
	put16(&t[0], src.port);
	put16(&t[2], dst.port);
	put32(&t[4], seq);
	put32(&t[8], ack);
	t[12] = static_cast<std::uint8_t>((tcp_hdr / 4) << 4);
	t[13] = flags;
	put16(&t[14], 65535);
	if (syn) {
		t[20] = 2; /* MSS */
		t[21] = 4;
		put16(&t[22], 1400);
	}
	std::memcpy(&t[tcp_hdr], payload.data(), payload.size());
	std::uint32_t acc = pseudo_sum(src.family, src.addr.data(), dst.addr.data(), tcp_len);
	put16(&t[16], static_cast<std::uint16_t>(~fold(sum16(t, tcp_len, acc))));
	return p;
}

struct TcpSeen {
	Endpoint src, dst;
	std::uint32_t seq = 0, ack = 0;
	std::uint8_t flags = 0;
	std::string payload;
	bool ip_checksum_ok = true;
	bool tcp_checksum_ok = false;
};

/* nullopt for anything but a well-formed TCP packet. */
std::optional<TcpSeen> parse_tcp(const std::uint8_t *p, std::size_t n)
{
	TcpSeen s;
	std::size_t ip_hdr;
	std::size_t total;
	if (n >= 20 && (p[0] >> 4) == 4) {
		ip_hdr = (p[0] & 0x0f) * 4u;
		total = get16(&p[2]);
		if (ip_hdr < 20 || total > n || total < ip_hdr || p[9] != IPPROTO_TCP)
			return std::nullopt;
		s.src.family = s.dst.family = AF_INET;
		std::memcpy(s.src.addr.data(), &p[12], 4);
		std::memcpy(s.dst.addr.data(), &p[16], 4);
		s.ip_checksum_ok = fold(sum16(p, ip_hdr)) == 0xffff;
	} else if (n >= 40 && (p[0] >> 4) == 6) {
		ip_hdr = 40;
		total = 40 + get16(&p[4]);
		if (total > n || p[6] != IPPROTO_TCP)
			return std::nullopt;
		s.src.family = s.dst.family = AF_INET6;
		std::memcpy(s.src.addr.data(), &p[8], 16);
		std::memcpy(s.dst.addr.data(), &p[24], 16);
	} else {
		return std::nullopt;
	}
	const std::uint8_t *t = p + ip_hdr;
	std::size_t tcp_len = total - ip_hdr;
	if (tcp_len < 20 || (t[12] >> 4) * 4u > tcp_len)
		return std::nullopt;
	s.src.port = static_cast<std::uint16_t>(get16(&t[0]));
	s.dst.port = static_cast<std::uint16_t>(get16(&t[2]));
	s.seq = get32(&t[4]);
	s.ack = get32(&t[8]);
	s.flags = t[13];
	std::size_t off = (t[12] >> 4) * 4u;
	s.payload.assign(reinterpret_cast<const char *>(t + off), tcp_len - off);
	std::uint32_t acc = pseudo_sum(s.src.family, s.src.addr.data(), s.dst.addr.data(), tcp_len);
	s.tcp_checksum_ok = fold(sum16(t, tcp_len, acc)) == 0xffff;
	return s;
}

bool same(const Endpoint &a, const Endpoint &b)
{
	return a.family == b.family && a.port == b.port &&
	       std::memcmp(a.addr.data(), b.addr.data(), addr_len(a.family)) == 0;
}

/* ---- descriptors and namespaces ---- */

using Clock = std::chrono::steady_clock;

bool wait_readable(int fd, int timeout_ms)
{
	pollfd p{fd, POLLIN, 0};
	return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* Reads the TUN until a TCP packet matching `want` arrives, or the timeout passes. */
std::optional<TcpSeen> read_tcp(int tun, const std::function<bool(const TcpSeen &)> &want, int timeout_ms = 3000,
				std::vector<std::string> *others = nullptr)
{
	auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
	std::vector<std::uint8_t> buf(70000);
	while (Clock::now() < deadline) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
		if (!wait_readable(tun, static_cast<int>(left) + 1))
			continue;
		ssize_t n = ::read(tun, buf.data(), buf.size());
		if (n <= 0)
			continue;
		auto seen = parse_tcp(buf.data(), static_cast<std::size_t>(n));
		if (seen && want(*seen))
			return seen;
		if (others)
			others->push_back("a " + std::to_string(n) + "-byte packet, IP version " +
					  std::to_string(buf[0] >> 4));
	}
	return std::nullopt;
}

ino_t inode_of(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

ino_t inode_of(const char *path)
{
	struct stat st{};
	REQUIRE(::stat(path, &st) == 0);
	return st.st_ino;
}

bool cloexec(int fd)
{
	return ::fcntl(fd, F_GETFD) & FD_CLOEXEC;
}

bool nonblocking(int fd)
{
	return ::fcntl(fd, F_GETFL) & O_NONBLOCK;
}

/* True when this process has no child left, zombie or not: the helper was reaped. */
bool no_children()
{
	int status;
	return ::waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD;
}

/*
 * Runs fn in a forked child that has entered the namespace (user first: joining the network
 * namespace needs its capabilities) and returns what fn returned. Reads /proc/sys and
 * /proc/self/net as the namespace sees them; works unprivileged too, as the owner of the
 * user namespace. The child uses no Catch2 machinery.
 */
std::string in_namespace(const Netns &ns, const std::function<std::string()> &fn)
{
	int p[2];
	REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
	UniqueFd rd(p[0]), wr(p[1]);
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		std::string out;
		if (::setns(ns.userns.get(), CLONE_NEWUSER) != 0)
			out = std::string("setns(user): ") + std::strerror(errno);
		else if (::setns(ns.netns.get(), CLONE_NEWNET) != 0)
			out = std::string("setns(net): ") + std::strerror(errno);
		else
			out = fn();
		ssize_t ignored = ::write(wr.get(), out.data(), out.size());
		(void)ignored;
		::_exit(0);
	}
	wr.reset();
	std::string out;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(rd.get(), buf, sizeof(buf))) > 0)
		out.append(buf, static_cast<std::size_t>(n));
	int status = 0;
	REQUIRE(::waitpid(pid, &status, 0) == pid);
	return out;
}

std::string read_file(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd.is_valid())
		return "<" + path + ": " + std::strerror(errno) + ">";
	std::string s;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0)
		s.append(buf, static_cast<std::size_t>(n));
	while (!s.empty() && s.back() == '\n')
		s.pop_back();
	return s;
}

/* An interface ioctl through a socket: it answers for the socket's own namespace. */
ifreq if_ioctl(int sock, const std::string &ifname, unsigned long req)
{
	ifreq ifr{};
	std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
	INFO("ioctl " << req << " on " << ifname);
	REQUIRE(::ioctl(sock, req, &ifr) == 0);
	return ifr;
}

std::string ntop(const sockaddr_storage &ss)
{
	char buf[INET6_ADDRSTRLEN] = {};
	if (ss.ss_family == AF_INET) {
		auto *sin = reinterpret_cast<const sockaddr_in *>(&ss);
		::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
		return std::string(buf) + ":" + std::to_string(ntohs(sin->sin_port));
	}
	auto *sin6 = reinterpret_cast<const sockaddr_in6 *>(&ss);
	::inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
	return "[" + std::string(buf) + "]:" + std::to_string(ntohs(sin6->sin6_port));
}

std::string sockname(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return ntop(ss);
}

std::string peername(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return ntop(ss);
}

int int_opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	REQUIRE(::getsockopt(fd, level, name, &v, &len) == 0);
	return v;
}

/*
 * Creates the namespace, or explains why this machine cannot: /dev/net/tun is mode 0600 on
 * some hosts, so only root may open it there (the error must say so clearly).
 */
std::optional<Netns> make(const NetnsConfig &cfg = {})
{
	auto r = create_netns(cfg);
	if (!r && ::geteuid() != 0 && ::access("/dev/net/tun", R_OK | W_OK) != 0) {
		CHECK_THAT(r.error(), Catch::Contains("Failed to open /dev/net/tun: Permission denied"));
		WARN("not root and /dev/net/tun is not ours to open: " << r.error());
		return std::nullopt;
	}
	INFO((r ? std::string() : r.error()));
	REQUIRE(r.has_value());
	return std::move(*r);
}

/*
 * The whole point of bumblebee's namespace: a client's SYN written into the TUN becomes a
 * connection on the kernel listener, data flows both ways, and every packet that comes back
 * out is well-formed.
 */
void handshake_through_tun(const Netns &ns, int listener, const Endpoint &client, const Endpoint &server)
{
	const std::uint32_t isn = 1000;
	auto syn = tcp_packet(client, server, isn, 0, kSyn);
	REQUIRE(::write(ns.tun.get(), syn.data(), syn.size()) == static_cast<ssize_t>(syn.size()));

	std::vector<std::string> others;
	auto synack = read_tcp(
		ns.tun.get(),
		[&](const TcpSeen &s) { return same(s.src, server) && same(s.dst, client); }, 3000, &others);
	INFO("other packets on the TUN: " << others.size());
	REQUIRE(synack.has_value());
	CHECK(synack->flags == (kSyn | kAck));
	CHECK(synack->ack == isn + 1);
	CHECK(synack->ip_checksum_ok);
	CHECK(synack->tcp_checksum_ok);

	auto ack = tcp_packet(client, server, isn + 1, synack->seq + 1, kAck | kPsh, "hello");
	REQUIRE(::write(ns.tun.get(), ack.data(), ack.size()) == static_cast<ssize_t>(ack.size()));

	REQUIRE(wait_readable(listener, 3000));
	UniqueFd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(conn.is_valid());
	char client_text[INET6_ADDRSTRLEN] = {};
	::inet_ntop(client.family, client.addr.data(), client_text, sizeof(client_text));
	std::string want_peer = client.family == AF_INET ? std::string(client_text) + ":" + std::to_string(client.port)
							  : "[" + std::string(client_text) + "]:" + std::to_string(client.port);
	CHECK(peername(conn.get()) == want_peer);

	REQUIRE(wait_readable(conn.get(), 3000));
	char buf[16] = {};
	REQUIRE(::recv(conn.get(), buf, sizeof(buf), 0) == 5);
	CHECK(std::string(buf, 5) == "hello");

	REQUIRE(::send(conn.get(), "world", 5, MSG_NOSIGNAL) == 5);
	auto reply = read_tcp(ns.tun.get(), [&](const TcpSeen &s) {
		return same(s.src, server) && same(s.dst, client) && !s.payload.empty();
	});
	REQUIRE(reply.has_value());
	CHECK(reply->payload == "world");
	CHECK(reply->ack == isn + 1 + 5);
	CHECK(reply->seq == synack->seq + 1);
	CHECK((reply->flags & (kSyn | kRst | kFin)) == 0);
	CHECK(reply->ip_checksum_ok);
	CHECK(reply->tcp_checksum_ok);
}

} // namespace

TEST_CASE("NetnsConfig: JSON round trip and validation naming the key", "[config]")
{
	NetnsConfig c;
	c.tun_name = "bbx";
	c.mtu = 9000;
	c.txqueuelen = 500;
	c.inet4 = "10.20.0.1/16";
	c.inet6 = "2001:db8:5::1/80";
	c.port = 8080;
	c.backlog = 77;
	auto back = NetnsConfig::from_json(c.to_json());
	CHECK(back.to_json() == c.to_json());
	CHECK(back.inet6 == "2001:db8:5::1/80");
	CHECK(NetnsConfig::from_json(nlohmann::json::object()).to_json() == NetnsConfig{}.to_json());

	auto rejects = [](const nlohmann::json &j, const std::string &key) {
		INFO(j.dump());
		try {
			NetnsConfig::from_json(j);
			FAIL("accepted");
		} catch (const std::invalid_argument &e) {
			CHECK_THAT(e.what(), Catch::StartsWith(key + ": "));
		}
	};
	rejects({{"inet4", "nonsense"}}, "inet4");
	rejects({{"inet4", "100.64.0.1"}}, "inet4");
	rejects({{"inet4", "100.64.0.1/32"}}, "inet4");
	rejects({{"inet4", "100.64.0.1/010"}}, "inet4");
	rejects({{"inet4", "127.0.0.1/8"}}, "inet4");
	rejects({{"inet4", "224.0.0.1/4"}}, "inet4");
	rejects({{"inet4", "fd00::1/64"}}, "inet4");
	rejects({{"inet6", "fe80::1/64"}}, "inet6");
	rejects({{"inet6", "fd00::1"}}, "inet6");
	rejects({{"inet6", "::1/128"}}, "inet6");
	rejects({{"inet6", "100.64.0.1/10"}}, "inet6");
	rejects({{"tun_name", ""}}, "tun_name");
	rejects({{"tun_name", "bb%d"}}, "tun_name");
	rejects({{"tun_name", "a-name-too-long-for-ifnamsiz"}}, "tun_name");
	rejects({{"tun_name", 5}}, "tun_name");
	rejects({{"mtu", 67}}, "mtu");
	rejects({{"mtu", 70000}}, "mtu");
	rejects({{"mtu", 1000}}, "mtu"); /* fine for IPv4, not with the default inet6 */
	rejects({{"mtu", "1500"}}, "mtu");
	rejects({{"txqueuelen", 0}}, "txqueuelen");
	rejects({{"port", 0}}, "port");
	rejects({{"port", 65536}}, "port");
	rejects({{"port", -1}}, "port");
	rejects({{"backlog", 0}}, "backlog");
	rejects({{"backlog", 1.5}}, "backlog");
	rejects({{"bogus", 1}}, "bogus");
	CHECK_NOTHROW(NetnsConfig::from_json({{"mtu", 1000}, {"inet6", ""}}));
}

TEST_CASE("create_netns builds the namespace as configured", "[netns]")
{
	NetnsConfig cfg;
	cfg.mtu = 9000;
	cfg.txqueuelen = 777;
	cfg.port = 8080;
	std::size_t fds_before = count_open_fds();
	auto made = make(cfg);
	if (!made)
		return;
	Netns &ns = *made;
	CHECK(no_children());
	/* Exactly the five descriptors arrived; nothing else was left open. */
	CHECK(count_open_fds() == fds_before + 5);

	SECTION("its own namespaces, each fd close-on-exec")
	{
		for (int fd : {ns.tun.get(), ns.listener4.get(), ns.listener6.get(), ns.netns.get(), ns.userns.get()})
			CHECK(cloexec(fd));
		CHECK(nonblocking(ns.tun.get()));
		CHECK(nonblocking(ns.listener4.get()));
		CHECK(nonblocking(ns.listener6.get()));

		CHECK(inode_of(ns.netns.get()) != inode_of("/proc/self/ns/net"));
		CHECK(inode_of(ns.userns.get()) != inode_of("/proc/self/ns/user"));
		/* The network namespace is owned by the user namespace we were given. */
		UniqueFd owner(::ioctl(ns.netns.get(), NS_GET_USERNS));
		REQUIRE(owner.is_valid());
		CHECK(inode_of(owner.get()) == inode_of(ns.userns.get()));
		/* The TUN and both listeners live in it. */
		UniqueFd tun_ns(::ioctl(ns.tun.get(), TUNGETDEVNETNS));
		REQUIRE(tun_ns.is_valid());
		CHECK(inode_of(tun_ns.get()) == inode_of(ns.netns.get()));
		for (int l : {ns.listener4.get(), ns.listener6.get()}) {
			UniqueFd sk_ns(::ioctl(l, SIOCGSKNS));
			REQUIRE(sk_ns.is_valid());
			CHECK(inode_of(sk_ns.get()) == inode_of(ns.netns.get()));
		}
	}

	SECTION("the TUN device")
	{
		ifreq ifr{};
		REQUIRE(::ioctl(ns.tun.get(), TUNGETIFF, &ifr) == 0);
		CHECK(std::string(ifr.ifr_name) == "bb0");
		CHECK((ifr.ifr_flags & (IFF_TUN | IFF_NO_PI)) == (IFF_TUN | IFF_NO_PI));
		CHECK((ifr.ifr_flags & IFF_TAP) == 0);

		/* As the namespace sees it, through a socket that lives there. */
		int sk = ns.listener4.get();
		CHECK(if_ioctl(sk, "bb0", SIOCGIFMTU).ifr_mtu == 9000);
		CHECK(if_ioctl(sk, "bb0", SIOCGIFTXQLEN).ifr_qlen == 777);
		CHECK((if_ioctl(sk, "bb0", SIOCGIFFLAGS).ifr_flags & IFF_UP) != 0);
		CHECK((if_ioctl(sk, "lo", SIOCGIFFLAGS).ifr_flags & IFF_UP) != 0);
		auto addr = if_ioctl(sk, "bb0", SIOCGIFADDR).ifr_addr;
		auto mask = if_ioctl(sk, "bb0", SIOCGIFNETMASK).ifr_netmask;
		char a[INET_ADDRSTRLEN], m[INET_ADDRSTRLEN];
		::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&addr)->sin_addr, a, sizeof(a));
		::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(&mask)->sin_addr, m, sizeof(m));
		CHECK(std::string(a) == "100.64.0.1");
		CHECK(std::string(m) == "255.192.0.0");
	}

	SECTION("the listeners")
	{
		CHECK(int_opt(ns.listener4.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1);
		CHECK(int_opt(ns.listener4.get(), SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
		CHECK(int_opt(ns.listener4.get(), SOL_SOCKET, SO_REUSEADDR) == 1);
		CHECK(sockname(ns.listener4.get()) == "100.64.0.1:8080");
		CHECK(int_opt(ns.listener6.get(), SOL_SOCKET, SO_ACCEPTCONN) == 1);
		CHECK(int_opt(ns.listener6.get(), IPPROTO_IPV6, IPV6_V6ONLY) == 1);
		CHECK(sockname(ns.listener6.get()) == "[fd5e:b0b0::1]:8080");
	}

	SECTION("sysctls and the IPv6 address, read inside the namespace")
	{
		std::string seen = in_namespace(ns, [] {
			std::string s;
			for (const char *dev : {"all", "default", "bb0"})
				s += read_file(std::string("/proc/sys/net/ipv4/conf/") + dev + "/rp_filter") + " ";
			s += read_file("/proc/sys/net/ipv6/conf/bb0/accept_ra") + " ";
			s += read_file("/proc/sys/net/ipv6/conf/bb0/autoconf") + "\n";
			s += read_file("/proc/self/net/if_inet6");
			return s;
		});
		INFO(seen);
		CHECK(seen.rfind("0 0 0 0 0\n", 0) == 0);
		/* if_inet6: address, ifindex, prefix length, scope, flags (0x80 permanent | 0x02 nodad), name. */
		CHECK_THAT(seen, Catch::Contains("fd5eb0b0000000000000000000000001"));
		bool found = false;
		std::size_t at = seen.find("fd5eb0b0000000000000000000000001");
		if (at != std::string::npos) {
			std::string line = seen.substr(at, seen.find('\n', at) - at);
			CHECK_THAT(line, Catch::Contains(" 40 00 82 ") && Catch::EndsWith("bb0"));
			found = true;
		}
		CHECK(found);
	}
}

TEST_CASE("a SYN written into the TUN becomes a connection on the IPv4 listener", "[e2e]")
{
	auto made = make();
	if (!made)
		return;
	/* Nothing leaves the TUN unasked: no router solicitation, no MLD, no DAD. */
	std::vector<std::string> noise;
	read_tcp(made->tun.get(), [](const TcpSeen &) { return false; }, 1500, &noise);
	std::string noise_text;
	for (auto &n : noise)
		noise_text += n + "; ";
	INFO("unasked packets: " << noise_text);
	CHECK(noise.empty());

	handshake_through_tun(*made, made->listener4.get(), endpoint("100.64.0.2", 40000), endpoint("100.64.0.1", 80));
	/* A source anywhere in the prefix: the NAT pool (rp_filter must not mind). */
	handshake_through_tun(*made, made->listener4.get(), endpoint("100.127.255.254", 1234),
			      endpoint("100.64.0.1", 80));
}

TEST_CASE("a SYN written into the TUN becomes a connection on the IPv6 listener", "[e2e]")
{
	auto made = make();
	if (!made)
		return;
	handshake_through_tun(*made, made->listener6.get(), endpoint("fd5e:b0b0::2", 40000),
			      endpoint("fd5e:b0b0::1", 80));
}

TEST_CASE("without inet6: one listener, and IPv6 is off on the TUN", "[netns]")
{
	NetnsConfig cfg;
	cfg.inet6 = "";
	cfg.tun_name = "tun-v4only";
	cfg.mtu = 1400;
	auto made = make(cfg);
	if (!made)
		return;
	CHECK(!made->listener6.is_valid());
	CHECK(made->listener4.is_valid());
	CHECK(if_ioctl(made->listener4.get(), "tun-v4only", SIOCGIFMTU).ifr_mtu == 1400);
	std::string seen = in_namespace(*made, [] {
		return read_file("/proc/sys/net/ipv6/conf/tun-v4only/disable_ipv6") + " " +
		       std::to_string(read_file("/proc/self/net/if_inet6").find("tun-v4only") == std::string::npos);
	});
	CHECK(seen == "1 1");
	handshake_through_tun(*made, made->listener4.get(), endpoint("100.64.0.9", 5555), endpoint("100.64.0.1", 80));
}

TEST_CASE("each call makes a namespace of its own", "[netns]")
{
	auto a = make();
	if (!a)
		return;
	auto b = make();
	REQUIRE(b.has_value());
	CHECK(inode_of(a->netns.get()) != inode_of(b->netns.get()));
	CHECK(inode_of(a->userns.get()) != inode_of(b->userns.get()));
	/* Same name, same address and port, no conflict. */
	CHECK(sockname(a->listener4.get()) == sockname(b->listener4.get()));
	/* The namespace outlives its helper and the TUN keeps working after the other is gone. */
	a.reset();
	handshake_through_tun(*b, b->listener4.get(), endpoint("100.64.1.1", 40001), endpoint("100.64.0.1", 80));
}

TEST_CASE("a bad config is refused before anything starts", "[errors]")
{
	std::size_t fds_before = count_open_fds();
	NetnsConfig cfg;
	cfg.inet4 = "nonsense";
	try {
		(void)create_netns(cfg);
		FAIL("accepted inet4 \"nonsense\"");
	} catch (const std::invalid_argument &e) {
		CHECK_THAT(e.what(), Catch::StartsWith("inet4: \"nonsense\""));
	}
	CHECK(count_open_fds() == fds_before);
	CHECK(no_children());
}

TEST_CASE("helper failures come back as clear errors, leaving nothing behind", "[errors]")
{
	std::size_t fds_before = count_open_fds();

	SECTION("the kernel refuses the device name")
	{
		/* lo exists in every namespace and is no TUN: TUNSETIFF says EINVAL. */
		NetnsConfig cfg;
		cfg.tun_name = "lo";
		auto r = create_netns(cfg);
		REQUIRE(!r.has_value());
		if (::geteuid() != 0 && ::access("/dev/net/tun", R_OK | W_OK) != 0)
			CHECK_THAT(r.error(), Catch::Contains("Failed to open /dev/net/tun: Permission denied"));
		else
			CHECK(r.error() ==
			      "Failed to set up the network namespace: Failed to create TUN device lo: Invalid argument");
	}
	SECTION("no such helper")
	{
		auto r = create_netns({}, "/nonexistent/bumblebee");
		REQUIRE(!r.has_value());
		CHECK(r.error() == "Failed to start the netns helper /nonexistent/bumblebee: No such file or directory");
	}
	SECTION("a helper that exits without a word")
	{
		auto r = create_netns({}, "/bin/false");
		REQUIRE(!r.has_value());
		CHECK_THAT(r.error(), Catch::Contains("exited with status 1"));
	}
	SECTION("a helper that dies by a signal")
	{
		/* sh -c 'kill -9 $$' ignores our extra arguments and kills itself. */
		std::string script = "/tmp/bb-netns-test-kill.sh";
		{
			UniqueFd f(::open(script.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755));
			REQUIRE(f.is_valid());
			std::string body = "#!/bin/sh\nkill -9 $$\n";
			REQUIRE(::write(f.get(), body.data(), body.size()) == static_cast<ssize_t>(body.size()));
		}
		auto r = create_netns({}, script);
		::unlink(script.c_str());
		REQUIRE(!r.has_value());
		CHECK_THAT(r.error(), Catch::Contains("killed by signal 9 (SIGKILL)"));
	}
	SECTION("the helper run by hand, without its socket")
	{
		char a0[] = "bumblebee", a1[] = "__bumblebee-netns-helper", a2[] = "0";
		char *argv[] = {a0, a1, a2, nullptr};
		CHECK(netns_helper_main(3, argv) == 2);
	}
	CHECK(count_open_fds() == fds_before);
	CHECK(no_children());
}

int main(int argc, char **argv)
{
	/* The test binary is its own helper: create_netns() runs /proc/self/exe. */
	if (argc >= 2 && std::strcmp(argv[1], kNetnsHelperArg) == 0)
		return netns_helper_main(argc, argv);
	return Catch::Session().run(argc, argv);
}
