// AccessPolicy: the SO_PEERCRED allow-list every daemon applies when a client connects.
#include <shoal/service/access.h>

#include <algorithm>

namespace shoal::service {

bool AccessPolicy::allows(const PeerCredentials &peer) const
{
	if (peer.uid == 0 || peer.uid == self)
		return true;
	if (std::find(uids.begin(), uids.end(), peer.uid) != uids.end())
		return true;
	return std::find(gids.begin(), gids.end(), peer.gid) != gids.end();
}

std::string AccessPolicy::describe() const
{
	std::string s = "uid 0, uid " + std::to_string(self);
	for (uid_t u : uids)
		s += ", uid " + std::to_string(u);
	for (gid_t g : gids)
		s += ", gid " + std::to_string(g);
	return s;
}

} // namespace shoal::service
