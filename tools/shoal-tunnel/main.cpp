// shoal-tunnel: runs PROGRAM in a TUN-routed network namespace and carries its TCP/UDP flows through bumblebee.
#include <csignal>
#include <cstdio>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "log.h"
#include "namespace_child.h"
#include "options.h"
#include "report.h"
#include "tunnel.h"

using namespace shoal::tunnel;

namespace {

/*
 * A flow holds our socket end, bumblebee's end until it answers, then the upgraded and the
 * upstream socket: budget 4 fds a flow (pipes are pooled and only held while bytes are in
 * flight; without one a relay copies), and keep some for the loop and the link.
 */
std::size_t max_flows_for(rlim_t nofile)
{
	if (nofile == RLIM_INFINITY || nofile > 1u << 22)
		nofile = 1u << 22;
	std::size_t n = nofile > 128 ? (static_cast<std::size_t>(nofile) - 64) / 4 : 10;
	return n;
}

} // namespace

int main(int argc, char **argv)
{
	ParsedOptions parsed = parse_options(argc, argv);
	if (!parsed.options)
		return parsed.exit_code;
	const Options &options = *parsed.options;
	set_log_level(options.quiet ? LogLevel::warn : options.verbose ? LogLevel::debug : LogLevel::info);

	/* A peer that vanished is an errno (EPIPE) on the loop, not a signal that kills us. */
	std::signal(SIGPIPE, SIG_IGN);

	/* Thousands of flows, several fds each: raise the soft limit to the hard one. PROGRAM gets the original back. */
	rlimit original{};
	::getrlimit(RLIMIT_NOFILE, &original);
	rlimit raised = original;
	raised.rlim_cur = raised.rlim_max;
	if (::setrlimit(RLIMIT_NOFILE, &raised) < 0)
		raised = original;

	ChildSpec spec;
	spec.network.mtu = options.mtu;
	spec.network.txqueuelen = options.txqueuelen;
	spec.network.inet4 = options.inet4;
	spec.network.inet6 = options.inet6;
	spec.argv = options.program;
	spec.nofile = original;
	std::string error;
	NamespaceChild child = start_namespace_child(spec, error);
	if (child.pid < 0) {
		TLOG_ERROR("cannot set up the namespace: %s", error.c_str());
		return kExitSetupFailed;
	}

	uv_loop_t loop;
	if (uv_loop_init(&loop) != 0) {
		TLOG_ERROR("cannot create the event loop");
		return kExitSetupFailed;
	}
	Report report;
	int status;
	std::uint64_t duration;
	bool started;
	{
		Tunnel tunnel(&loop, options, std::move(child), report, max_flows_for(raised.rlim_cur));
		status = tunnel.run();
		duration = tunnel.duration_ms();
		started = tunnel.program_started();
	}
	/* Let libuv finish closing what the tunnel closed on its way out. */
	uv_run(&loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(&loop);

	if (!options.report_path.empty()) {
		std::string werr;
		if (!report.write(options.report_path, options.program, status, duration, werr))
			TLOG_ERROR("cannot write the report: %s", werr.c_str());
	}
	if (!options.quiet && started)
		log(LogLevel::info, "%s", report.summary(status, duration).c_str());
	return status;
}
