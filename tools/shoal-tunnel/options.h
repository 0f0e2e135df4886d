// The command line of shoal-tunnel: what it parses into, and --help.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/socket.h>

namespace shoal::tunnel {

/* An address with its prefix length for tun0, e.g. 10.200.0.2/24; absent with "none". */
struct InterfaceAddress {
	bool enabled = true;
	int family = AF_INET;
	std::string address; /* "10.200.0.2" */
	unsigned prefix = 24;

	std::string text() const { return address + "/" + std::to_string(prefix); }
};

struct Options {
	std::string bumblebee_path;
	bool confirm = false;
	std::optional<std::uint64_t> timeout_ms; /* sent in upgrade; absent: bumblebee's default */
	unsigned mtu = 1500;
	unsigned txqueuelen = 1000;
	InterfaceAddress inet4{true, AF_INET, "10.200.0.2", 24};
	InterfaceAddress inet6{true, AF_INET6, "fd00:200::2", 64};
	std::string owner; /* empty: shoal-tunnel-<pid> */
	std::optional<sockaddr_storage> connect_to;
	std::string connect_to_text;
	std::uint64_t connect_timeout_ms = 5000;
	std::uint64_t drain_ms = 2000;
	std::string report_path;
	bool quiet = false;
	bool verbose = false;
	std::vector<std::string> program; /* PROGRAM and its arguments */
};

/* Either options to run with, or an exit code: 0 after --help/--version, 2 for a usage error. */
struct ParsedOptions {
	std::optional<Options> options;
	int exit_code = 0;
};

/* Parses argv; prints --help/--version to stdout and usage errors to stderr itself. */
ParsedOptions parse_options(int argc, char **argv);

} // namespace shoal::tunnel
