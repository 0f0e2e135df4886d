// What shoal-tunnel saw: one record per flow, the counters, the JSON report and the summary line.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace shoal::tunnel {

/* One flow's story, kept after the flow itself is gone. */
struct FlowRecord {
	std::string id;       /* our upgrade request id */
	std::string flow;     /* "src -> dst" as PROGRAM's packets say */
	std::string protocol; /* "tcp" / "udp" */
	std::string task;     /* bumblebee's, once known */
	std::string reason;   /* ended's reason, or ours ("refused", "no_answer", "closed") */
	std::string error;    /* what went wrong, if anything */
	std::string upstream; /* the address we relayed to */
	bool upgraded = false;
	bool ended = false;    /* bumblebee's ended arrived */
	bool expect_ended = false; /* an ended may still come (not in the report: shutdown bookkeeping) */
	std::optional<bool> confirmed; /* --confirm: what we answered */
	std::uint64_t relay_bytes_up = 0;   /* PROGRAM → upstream, through the relay */
	std::uint64_t relay_bytes_down = 0; /* upstream → PROGRAM */
	std::uint64_t tun_packets_out = 0;  /* PROGRAM's packets handed to bumblebee */
	std::uint64_t tun_packets_in = 0;   /* bumblebee's packets written to tun0 */
	std::uint64_t tun_drops = 0;        /* PROGRAM's packets dropped: bumblebee's queue was full */
	/* from ended */
	std::uint64_t bytes_in = 0, bytes_out = 0, packets_in = 0, packets_out = 0, duration_ms = 0;
	std::uint64_t started_ms = 0; /* since shoal-tunnel started */
};

struct Counters {
	std::uint64_t tun_packets_read = 0;
	std::uint64_t tun_bytes_read = 0;
	std::uint64_t tun_packets_written = 0;
	std::uint64_t tun_bytes_written = 0;
	std::uint64_t tun_write_errors = 0;
	std::uint64_t unparseable = 0;      /* not IPv4/IPv6 TCP/UDP/ICMP we could parse (fragments included) */
	std::uint64_t not_tcp_udp = 0;      /* ICMP and the like: no flow to carry them */
	std::uint64_t rst_sent = 0;         /* answers to TCP packets of no known flow */
	std::uint64_t late_packets = 0;     /* stragglers of a TCP flow bumblebee just closed: dropped quietly */
	std::uint64_t icmp_unreachable_sent = 0;
	std::uint64_t flows_tcp = 0;
	std::uint64_t flows_udp = 0;
	std::uint64_t flows_busy = 0;       /* refused locally: too many flows at once */
	std::uint64_t syn_retransmits = 0;
	std::uint64_t flow_queue_drops = 0; /* a flow socket was full: packet dropped, as a router would */
	std::uint64_t flow_closed_drops = 0; /* bumblebee had just closed the flow's socket */
	std::uint64_t flow_recv_truncated = 0;
	std::uint64_t upgrades_sent = 0;
	std::uint64_t upgraded = 0;
	std::uint64_t upgrade_errors = 0;
	std::uint64_t upgrade_no_answer = 0;
	std::uint64_t syn_events = 0;
	std::uint64_t confirms_accepted = 0;
	std::uint64_t confirms_refused = 0;
	std::uint64_t ended = 0;
	std::uint64_t results_unmatched = 0;
	std::uint64_t upstream_connect_failures = 0;
	std::uint64_t relays_tcp = 0;
	std::uint64_t relays_udp = 0;
	std::uint64_t relay_errors = 0;
	std::uint64_t relay_bytes_up = 0;
	std::uint64_t relay_bytes_down = 0;
	std::uint64_t link_connects = 0;
	std::uint64_t link_losses = 0;
	std::uint64_t protocol_errors = 0; /* messages from bumblebee we could not decode */
};

class Report {
public:
	/* Records are never moved: a deque keeps their addresses stable as it grows. */
	FlowRecord &add_flow();
	const std::deque<FlowRecord> &flows() const { return flows_; }
	Counters counters;

	/* The JSON document --report writes; exit is PROGRAM's exit status. */
	std::string to_json(const std::vector<std::string> &program, int exit_status,
			    std::uint64_t duration_ms) const;
	/* Writes it to path (via a temporary and rename, so a reader never sees half). */
	bool write(const std::string &path, const std::vector<std::string> &program, int exit_status,
		   std::uint64_t duration_ms, std::string &error) const;
	/* The few lines --quiet leaves out. */
	std::string summary(int exit_status, std::uint64_t duration_ms) const;

private:
	std::deque<FlowRecord> flows_;
};

} // namespace shoal::tunnel
