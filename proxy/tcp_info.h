// TCP_INFO of a socket as JSON, for the audit line written when a relay ends.
#pragma once

#include <nlohmann/json.hpp>

namespace shoal::proxy {

/*
 * {"state":"CLOSE_WAIT","rtt_us":…,"retransmits":…,"bytes_acked":…,…}: the fields the kernel
 * filled in (older kernels return a shorter struct; missing fields are left out), or
 * {"error":"ENOTSOCK"} when the socket has no TCP_INFO. Never throws but for bad_alloc.
 */
nlohmann::json tcp_info_json(int fd);

} // namespace shoal::proxy
