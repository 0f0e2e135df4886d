// splicer: relay socket pairs with splice(2) and hand them back when done.
#include <shoal/service/config.h>
#include <shoal/service/runtime.h>

#include "shoal_version.h"
#include "splicer_service.h"

int main(int argc, char **argv)
{
	shoal::service::ProgramInfo info{
		"splicer", SHOAL_VERSION,
		"relay socket pairs with splice(2) and hand them back when done",
		"A proxy passes two connected stream sockets (TCP or Unix) with a splice request; splicer\n"
		"relays bytes both ways, passing EOF on as shutdown(SHUT_WR), until both ways end, an error,\n"
		"an idle timeout or a cancel, then returns both sockets, the metadata and byte counts in a\n"
		"done event. SIGHUP or `shoalctl upgrade` hands every live relay to a new process without\n"
		"losing a byte; SIGTERM hands every relay back to its owner. Protocol: proto/PROTOCOL.md."};
	return shoal::service::run_daemon(info, std::make_unique<shoal::splicer::SplicerService>(), argc, argv);
}
