// Flow: one TCP or UDP flow of PROGRAM's, from its first packet to the end of its upstream relay.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <shoal/fdpass/unique_fd.h>
#include <shoal/packet/packet.h>
#include <shoal/proto/messages.h>

#include "report.h"
#include "upstream_connect.h"
#include "upstream_relay.h"

namespace shoal::tunnel {

class FlowTable;

/*
 * The packet side (FlowTable) owns sock and poll; the request side (Tunnel) owns the rest.
 * A flow lives until bumblebee answered its upgrade, its socket is closed, and its
 * upstream work (connect, relay) is over; its FlowRecord outlives it in the Report.
 */
struct Flow {
	/* identity */
	std::string id;                /* the upgrade request's id; events about it carry it too */
	packet::FlowKey key;           /* as PROGRAM's packets have it: src = PROGRAM */
	proto::FlowProtocol protocol = proto::FlowProtocol::tcp;
	FlowRecord *record = nullptr;  /* stable: the Report's deque never moves records */
	std::uint32_t isn = 0;         /* the SYN's sequence number: a retransmission repeats it */
	std::vector<std::uint8_t> first; /* the first packet, to refuse the flow with a RST / ICMP */

	/* packet side */
	FlowTable *table = nullptr;
	UniqueFd sock;                 /* our end of the socketpair: PROGRAM's packets in, replies out */
	uv_poll_t *poll = nullptr;
	bool in_table = false;         /* PROGRAM's packets with this key come here */

	/* request side */
	UniqueFd peer;                 /* our copy of the end bumblebee got, closed once it answered */
	bool sent = false;             /* the upgrade left for bumblebee (it may be queued until a welcome) */
	bool answered = false;         /* upgraded, error or ended arrived */
	bool syn_seen = false;         /* --confirm: the syn event came */
	std::uint64_t deadline_ms = 0; /* loop time after which an unanswered upgrade is given up */
	std::string task;

	/* upstream side */
	std::unique_ptr<Connector> connector;
	UniqueFd upstream;             /* --confirm: connected before upgraded arrives */
	UniqueFd upgraded;             /* upgraded arrived, the upstream connect is still under way */
	std::unique_ptr<Relay> relay;

	bool socket_open() const { return sock.is_valid(); }
	bool busy() const { return !answered || sock.is_valid() || connector || relay; }
};

} // namespace shoal::tunnel
