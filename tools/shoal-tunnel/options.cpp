// The command line of shoal-tunnel: getopt_long, validation of every value, and the help text.
#include "options.h"

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include "shoal_version.h"

namespace shoal::tunnel {

namespace {

const char kHelp[] = R"(Usage: shoal-tunnel --bumblebee PATH [OPTIONS] [--] PROGRAM [ARGS...]

Runs PROGRAM in a fresh network namespace whose default routes (IPv4 and IPv6)
point at a TUN device, tun0, and carries every TCP or UDP flow PROGRAM opens to
bumblebee: one `upgrade` per flow, whose fd is a SOCK_SEQPACKET socket of the
flow's raw IP packets starting with its SYN (or first datagram). The connected
kernel socket bumblebee hands back in `upgraded` is relayed, in the namespace
shoal-tunnel was started in, to an upstream: the address PROGRAM dialled, or
--connect-to. TCP packets of unknown flows are answered with a RST; other
packets (ICMP, fragments, garbage) are counted and dropped.

Required:
  --bumblebee PATH         bumblebee's SOCK_SEQPACKET socket

Flows:
  --confirm                upgrade with confirm:true: on bumblebee's `syn` event
                           connect to the upstream first and answer `confirm`
                           accept:true if that worked, accept:false otherwise
                           (PROGRAM then sees its connection refused). Without
                           it the upstream is dialled once `upgraded` arrives,
                           and a failure closes the upgraded socket (a reset).
  --timeout-ms N           upgrade timeout_ms, 1-600000 (default: bumblebee's)
  --connect-to HOST:PORT   relay every flow to this upstream instead of the
                           flow's own destination ("[v6]:port" for IPv6)
  --connect-timeout-ms N   give up on an upstream connect after N ms (default 5000)
  --owner NAME             hello owner (default shoal-tunnel-<pid>); results of
                           a lost connection come back through its mailbox

Namespace:
  --mtu N                  tun0's MTU, 68-65535 (default 1500; IPv6 needs 1280+)
  --txqueuelen N           tun0's transmit queue, 1-1000000 packets (default 1000)
  --inet4 ADDR/PREFIX      tun0's IPv4 address (default 10.200.0.2/24), or none
  --inet6 ADDR/PREFIX      tun0's IPv6 address (default fd00:200::2/64, no DAD),
                           or none

Ending:
  --drain-ms N             after PROGRAM exits, wait up to N ms for its flows to
                           finish before closing everything (default 2000)
  --report FILE            write a JSON report at exit: {"flows":[{"flow","task",
                           "reason","upgraded","relay_bytes_up",
                           "relay_bytes_down","error"?,…}],"counters":{…}}
  -q, --quiet              only warnings and errors; no summary line
  -v, --verbose            one line per flow event
  --help, --version

PROGRAM starts once bumblebee has answered our hello (within 5 s, else exit
125); if the connection drops later, shoal-tunnel reconnects as the same owner
and picks its results up from the mailbox. PROGRAM inherits only stdin, stdout
and stderr. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to shoal-tunnel are passed
on to PROGRAM. Not root: the namespace is made inside a new user namespace (uid
and gid mapped to themselves); /dev/net/tun must then be open to the user.

Exit status: PROGRAM's (128+N if it was killed by signal N); 125 if
shoal-tunnel failed before PROGRAM ran; 126/127 if PROGRAM could not be
executed/found.

Example:
  shoal-tunnel --bumblebee /run/shoal/bumblebee.sock --connect-to 127.0.0.1:8080 \
      -- curl -s http://10.0.0.1:8080/
)";

enum OptionId {
	opt_bumblebee = 1000,
	opt_confirm,
	opt_timeout_ms,
	opt_mtu,
	opt_txqueuelen,
	opt_inet4,
	opt_inet6,
	opt_owner,
	opt_connect_to,
	opt_connect_timeout_ms,
	opt_drain_ms,
	opt_report,
	opt_quiet,
	opt_verbose,
	opt_help,
	opt_version,
};

bool parse_uint(const char *text, std::uint64_t lo, std::uint64_t hi, std::uint64_t &out)
{
	if (!text || !*text || *text == '-' || *text == '+')
		return false;
	errno = 0;
	char *end = nullptr;
	unsigned long long v = std::strtoull(text, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	out = v;
	return true;
}

bool parse_interface_address(const char *text, int family, InterfaceAddress &out)
{
	std::string s(text);
	if (s == "none") {
		out.enabled = false;
		return true;
	}
	auto slash = s.find('/');
	if (slash == std::string::npos)
		return false;
	std::string addr = s.substr(0, slash);
	unsigned char buf[sizeof(in6_addr)];
	if (::inet_pton(family, addr.c_str(), buf) != 1)
		return false;
	std::uint64_t prefix;
	if (!parse_uint(s.c_str() + slash + 1, 1, family == AF_INET ? 32 : 128, prefix))
		return false;
	out = InterfaceAddress{true, family, addr, static_cast<unsigned>(prefix)};
	return true;
}

/* HOST:PORT or [V6]:PORT; HOST may be a name, resolved now (blocking is fine before the loop). */
bool parse_host_port(const std::string &text, sockaddr_storage &out, std::string &error)
{
	std::string host, port;
	if (!text.empty() && text[0] == '[') {
		auto close = text.find(']');
		if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
			error = "expected [IPV6]:PORT";
			return false;
		}
		host = text.substr(1, close - 1);
		port = text.substr(close + 2);
	} else {
		auto colon = text.rfind(':');
		if (colon == std::string::npos || text.find(':') != colon) {
			error = "expected HOST:PORT (IPv6 in brackets)";
			return false;
		}
		host = text.substr(0, colon);
		port = text.substr(colon + 1);
	}
	std::uint64_t p;
	if (host.empty() || !parse_uint(port.c_str(), 1, 65535, p)) {
		error = "expected HOST:PORT with a port 1-65535";
		return false;
	}
	addrinfo hints{};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	addrinfo *res = nullptr;
	int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
	if (rc != 0 || !res) {
		error = std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
		return false;
	}
	std::memset(&out, 0, sizeof out);
	std::memcpy(&out, res->ai_addr, res->ai_addrlen);
	::freeaddrinfo(res);
	return true;
}

int usage_error(const char *format, const char *value)
{
	std::fprintf(stderr, "shoal-tunnel: ");
	std::fprintf(stderr, format, value);
	std::fprintf(stderr, "\nTry 'shoal-tunnel --help'.\n");
	return 2;
}

} // namespace

ParsedOptions parse_options(int argc, char **argv)
{
	static const option longopts[] = {
		{"bumblebee", required_argument, nullptr, opt_bumblebee},
		{"confirm", no_argument, nullptr, opt_confirm},
		{"timeout-ms", required_argument, nullptr, opt_timeout_ms},
		{"mtu", required_argument, nullptr, opt_mtu},
		{"txqueuelen", required_argument, nullptr, opt_txqueuelen},
		{"inet4", required_argument, nullptr, opt_inet4},
		{"inet6", required_argument, nullptr, opt_inet6},
		{"owner", required_argument, nullptr, opt_owner},
		{"connect-to", required_argument, nullptr, opt_connect_to},
		{"connect-timeout-ms", required_argument, nullptr, opt_connect_timeout_ms},
		{"drain-ms", required_argument, nullptr, opt_drain_ms},
		{"report", required_argument, nullptr, opt_report},
		{"quiet", no_argument, nullptr, opt_quiet},
		{"verbose", no_argument, nullptr, opt_verbose},
		{"help", no_argument, nullptr, opt_help},
		{"version", no_argument, nullptr, opt_version},
		{nullptr, 0, nullptr, 0},
	};
	ParsedOptions result;
	Options o;
	opterr = 0;
	optind = 1;
	int c;
	/* "+": stop at PROGRAM, so its own options are left alone even without "--". */
	while ((c = ::getopt_long(argc, argv, "+:hqv", longopts, nullptr)) != -1) {
		std::uint64_t v = 0;
		switch (c) {
		case opt_bumblebee:
			if (!*optarg) {
				result.exit_code = usage_error("--bumblebee: empty path%s", "");
				return result;
			}
			o.bumblebee_path = optarg;
			break;
		case opt_confirm:
			o.confirm = true;
			break;
		case opt_timeout_ms:
			if (!parse_uint(optarg, 1, 600000, v)) {
				result.exit_code = usage_error("--timeout-ms: '%s' is not an integer 1-600000", optarg);
				return result;
			}
			o.timeout_ms = v;
			break;
		case opt_mtu:
			if (!parse_uint(optarg, 68, 65535, v)) {
				result.exit_code = usage_error("--mtu: '%s' is not an integer 68-65535", optarg);
				return result;
			}
			o.mtu = static_cast<unsigned>(v);
			break;
		case opt_txqueuelen:
			if (!parse_uint(optarg, 1, 1000000, v)) {
				result.exit_code = usage_error("--txqueuelen: '%s' is not an integer 1-1000000", optarg);
				return result;
			}
			o.txqueuelen = static_cast<unsigned>(v);
			break;
		case opt_inet4:
			if (!parse_interface_address(optarg, AF_INET, o.inet4)) {
				result.exit_code = usage_error("--inet4: '%s' is not ADDRESS/PREFIX (e.g. 10.200.0.2/24) or none", optarg);
				return result;
			}
			break;
		case opt_inet6:
			if (!parse_interface_address(optarg, AF_INET6, o.inet6)) {
				result.exit_code = usage_error("--inet6: '%s' is not ADDRESS/PREFIX (e.g. fd00:200::2/64) or none", optarg);
				return result;
			}
			break;
		case opt_owner: {
			std::string owner(optarg);
			bool ok = !owner.empty() && owner.size() <= 128;
			for (char ch : owner)
				ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || std::strchr("._:@-", ch));
			if (!ok) {
				result.exit_code = usage_error("--owner: '%s' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -", optarg);
				return result;
			}
			o.owner = owner;
			break;
		}
		case opt_connect_to: {
			sockaddr_storage ss;
			std::string error;
			if (!parse_host_port(optarg, ss, error)) {
				std::string msg = std::string("--connect-to: '%s': ") + error;
				result.exit_code = usage_error(msg.c_str(), optarg);
				return result;
			}
			o.connect_to = ss;
			o.connect_to_text = optarg;
			break;
		}
		case opt_connect_timeout_ms:
			if (!parse_uint(optarg, 1, 600000, v)) {
				result.exit_code = usage_error("--connect-timeout-ms: '%s' is not an integer 1-600000", optarg);
				return result;
			}
			o.connect_timeout_ms = v;
			break;
		case opt_drain_ms:
			if (!parse_uint(optarg, 0, 600000, v)) {
				result.exit_code = usage_error("--drain-ms: '%s' is not an integer 0-600000", optarg);
				return result;
			}
			o.drain_ms = v;
			break;
		case opt_report:
			o.report_path = optarg;
			break;
		case 'q':
		case opt_quiet:
			o.quiet = true;
			break;
		case 'v':
		case opt_verbose:
			o.verbose = true;
			break;
		case 'h':
		case opt_help:
			std::fputs(kHelp, stdout);
			return result;
		case opt_version:
			std::printf("shoal-tunnel %s\n", SHOAL_VERSION);
			return result;
		case ':':
			result.exit_code = usage_error("%s needs a value", argv[optind - 1]);
			return result;
		default:
			result.exit_code = usage_error("unknown option '%s'", argv[optind - 1]);
			return result;
		}
	}
	for (int i = optind; i < argc; i++)
		o.program.emplace_back(argv[i]);
	if (o.bumblebee_path.empty()) {
		result.exit_code = usage_error("--bumblebee PATH is required%s", "");
		return result;
	}
	if (o.program.empty()) {
		result.exit_code = usage_error("no PROGRAM to run (put it after --)%s", "");
		return result;
	}
	if (!o.inet4.enabled && !o.inet6.enabled) {
		result.exit_code = usage_error("--inet4 none and --inet6 none leave PROGRAM no network%s", "");
		return result;
	}
	if (o.inet6.enabled && o.mtu < 1280) {
		result.exit_code = usage_error("--mtu below 1280 needs --inet6 none (IPv6 requires 1280)%s", "");
		return result;
	}
	if (o.quiet && o.verbose) {
		result.exit_code = usage_error("--quiet and --verbose contradict each other%s", "");
		return result;
	}
	result.options = std::move(o);
	return result;
}

} // namespace shoal::tunnel
