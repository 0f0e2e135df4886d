// Inside the new network namespace: lo up, tun0 created and configured, default routes via tun0.
#pragma once

#include <string>

#include <shoal/fdpass/unique_fd.h>

#include "options.h"

namespace shoal::tunnel {

struct NetworkSpec {
	unsigned mtu = 1500;
	unsigned txqueuelen = 1000;
	InterfaceAddress inet4;
	InterfaceAddress inet6;
};

/*
 * Run in the namespace's first process, before PROGRAM: turns off IPv6 DAD, router
 * solicitations and link-local addresses (so tun0 carries PROGRAM's packets only), opens
 * tun0 (IFF_TUN | IFF_NO_PI, non-blocking, close-on-exec), sets its MTU and queue, adds the
 * addresses and the default routes over rtnetlink (libnl-route-3). Returns the TUN fd, or
 * an invalid fd with error set to a sentence saying what failed.
 */
UniqueFd setup_network(const NetworkSpec &spec, std::string &error);

} // namespace shoal::tunnel
