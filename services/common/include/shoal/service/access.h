// Who may talk to a daemon: SO_PEERCRED checked against allowed uids and gids.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

#include <shoal/fdpass/peer.h>

namespace shoal::service {

struct AccessPolicy {
	std::vector<uid_t> uids;
	std::vector<gid_t> gids;
	uid_t self = 0; /* the daemon's own uid, always allowed, as is root */

	/*
	 * Only the peer's primary gid is known from SO_PEERCRED; supplementary groups are not
	 * consulted, so grant access to a group through the socket file's group and mode instead.
	 */
	bool allows(const PeerCredentials &peer) const;
	std::string describe() const;
};

} // namespace shoal::service
