// shoal-proxy's entry point: parse the command line, run the Proxy on one libuv loop, exit 0 on SIGTERM/SIGINT.
#include <csignal>
#include <cstdio>
#include <memory>

#include <uv.h>

#include <shoal/service/config.h>
#include <shoal/service/log.h>

#include "config.h"
#include "proxy.h"
#include "util.h"

namespace {

using namespace shoal;
using namespace shoal::proxy;

struct Signals {
	uv_signal_t term{}, intr{}, hup{};
};

void close_all(uv_handle_t *handle, void *)
{
	if (!uv_is_closing(handle))
		uv_close(handle, nullptr);
}

int run(const ProxyConfig &config)
{
	uv_loop_t loop;
	if (int r = uv_loop_init(&loop); r < 0) {
		service::logger("proxy")->critical("uv_loop_init: {}", uv_err_name(r));
		return 1;
	}
	auto proxy = std::make_unique<Proxy>(&loop, config);
	if (auto err = proxy->start()) {
		service::logger("proxy")->critical("{}", *err);
		proxy.reset();
		uv_walk(&loop, close_all, nullptr);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		return 1;
	}

	Signals sig;
	auto on_stop = [](uv_signal_t *s, int signum) {
		auto *p = static_cast<Proxy *>(s->data);
		guarded("signal", [&] {
			service::logger("proxy")->info("{}: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
			p->stop([loop = s->loop] { uv_stop(loop); });
		});
	};
	for (uv_signal_t *s : {&sig.term, &sig.intr, &sig.hup}) {
		uv_signal_init(&loop, s);
		s->data = proxy.get();
	}
	uv_signal_start(&sig.term, on_stop, SIGTERM);
	uv_signal_start(&sig.intr, on_stop, SIGINT);
	uv_signal_start(
		&sig.hup,
		[](uv_signal_t *s, int) {
			guarded("SIGHUP", [&] { static_cast<Proxy *>(s->data)->reopen_audit(); });
		},
		SIGHUP);

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Stopped: let every handle close, then the loop. */
	proxy.reset();
	uv_walk(&loop, close_all, nullptr);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	service::logger("proxy")->info("stopped");
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	/* Every send uses MSG_NOSIGNAL; this covers anything that does not. */
	std::signal(SIGPIPE, SIG_IGN);
	try {
		auto info = program_info();
		auto schema = config_schema();
		auto cl = service::parse_command_line(info, schema, argc, argv);
		if (!cl.config) {
			service::write_output(cl);
			return cl.exit_code;
		}
		auto config = load_config(*cl.config);
		if (!config) {
			std::fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", info.name.c_str(),
				     config.error().c_str(), info.name.c_str());
			return 2;
		}
		service::setup_logging(config->log_level);
		return run(*config);
	} catch (const std::exception &e) {
		std::fprintf(stderr, "shoal-proxy: %s\n", e.what());
		return 1;
	}
}
