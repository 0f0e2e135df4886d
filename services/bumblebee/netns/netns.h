// bumblebee's own user+network namespace: a TUN device and TCP listeners inside it, built by a helper process.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include <shoal/expected.h>
#include <shoal/fdpass/unique_fd.h>

namespace shoal::bumblebee {

/* argv[1] that turns the bumblebee binary (or a test binary) into the namespace helper. */
inline constexpr const char *kNetnsHelperArg = "__bumblebee-netns-helper";

struct NetnsConfig {
	std::string tun_name = "bb0";
	unsigned mtu = 65520;
	unsigned txqueuelen = 1000;
	std::string inet4 = "100.64.0.1/10";   // the TUN's IPv4 address/prefix; the listener binds this address
	std::string inet6 = "fd5e:b0b0::1/64"; // the TUN's IPv6 address/prefix (IFA_F_NODAD); empty = no IPv6
	std::uint16_t port = 80;               // listener port (v4 and v6)
	int backlog = 4096;

	/* Every key, always: this is how the config travels to the helper. */
	nlohmann::json to_json() const;
	/*
	 * Any subset of the keys (the rest keep their defaults); unknown keys, wrong types and
	 * bad values throw std::invalid_argument whose message starts with the key ("mtu: ...").
	 */
	static NetnsConfig from_json(const nlohmann::json &j);
	/* Throws std::invalid_argument naming the first bad key; create_netns() calls it first. */
	void validate() const;
};

struct Netns {
	UniqueFd tun;       // O_NONBLOCK|O_CLOEXEC, IFF_TUN|IFF_NO_PI, the device inside the namespace
	UniqueFd listener4; // non-blocking, close-on-exec, listening TCP socket inside the namespace on inet4's address:port
	UniqueFd listener6; // same for IPv6 (IPV6_V6ONLY); invalid when inet6 is empty
	UniqueFd netns;     // an fd of the namespace (/proc/<helper>/ns/net), O_CLOEXEC: keeps it identifiable
	UniqueFd userns;    // the same for the user namespace
};

/*
 * Validates cfg (throws std::invalid_argument naming the bad key), starts `helper_binary`
 * with argv {helper_binary, "__bumblebee-netns-helper", "<fd>"} and one end of a
 * SOCK_SEQPACKET socketpair (inheritable only in the child), sends it cfg as JSON, receives
 * the descriptors, reaps the helper and returns them. Blocks for as long as the helper works
 * (milliseconds; at most 10 s before the helper is killed): call it at start-up, not from
 * the event loop. Failures come back as "Failed to ...: <reason>", with the helper's own
 * message when it sent one; no descriptor and no process is left behind.
 *
 * The binary must dispatch to netns_helper_main() when argv[1] is kNetnsHelperArg.
 */
Expected<Netns, std::string> create_netns(const NetnsConfig &cfg,
					  const std::string &helper_binary = "/proc/self/exe");

/*
 * The helper's whole main (argv[1] == "__bumblebee-netns-helper", argv[2] the socket's fd).
 * Single-threaded by construction (a fresh exec), as unshare(CLONE_NEWUSER) requires.
 * Returns the process's exit status: 0 after sending the fds, 1 after sending an error,
 * 2 when it has no usable socket to report on.
 */
int netns_helper_main(int argc, char **argv);

} // namespace shoal::bumblebee
