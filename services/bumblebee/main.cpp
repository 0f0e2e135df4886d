// bumblebee: turn IP flows into kernel TCP sockets inside an unshared user+network namespace.
#include <cstring>

#include <shoal/service/config.h>
#include <shoal/service/runtime.h>

#include "bumblebee_service.h"
#include "netns.h"
#include "shoal_version.h"

int main(int argc, char **argv)
{
	/* The namespace helper is this binary re-executed: single-threaded by construction. */
	if (argc >= 2 && std::strcmp(argv[1], "__bumblebee-netns-helper") == 0)
		return shoal::bumblebee::netns_helper_main(argc, argv);
	shoal::service::ProgramInfo info{
		"bumblebee", SHOAL_VERSION,
		"turn IP flows into kernel TCP sockets inside an unshared network namespace",
		"A proxy passes a socket carrying one IP flow (raw IPv4/IPv6 packets, starting with the\n"
		"TCP SYN) with an upgrade request; bumblebee NATs the flow onto a TUN device in its own\n"
		"user+network namespace, where the kernel's TCP stack accepts it, and returns the\n"
		"connected kernel socket in upgraded (UDP: a SOCK_SEQPACKET socket of payloads). It\n"
		"pumps the flow's packets both ways until FIN both ways, RST, the flow socket closing or\n"
		"an idle timeout, then sends ended. SIGHUP or `shoalctl upgrade` hands the namespace, the\n"
		"TUN, the listeners, every flow and the NAT table to a new process. Runs unprivileged:\n"
		"its only privileges are inside its own user namespace. Protocol: proto/PROTOCOL.md."};
	return shoal::service::run_daemon(info, std::make_unique<shoal::bumblebee::BumblebeeService>(), argc, argv);
}
