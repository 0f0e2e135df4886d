#!/usr/bin/env bash
# SIGKILL the proxy mid-transfer: relays finish in splicer, and a restarted proxy (same owner) audits their done events.
source "$(dirname "$0")/lib.sh"
need_splicer

UP=$(free_port)
P=$(free_port)
SOCK=$WORK/splicer.sock
IN_SIZE=1000000
A_SIZE=6000000 # at 3 MB/s: ends ~2 s in, after the proxy is killed, before its successor starts
B_SIZE=15000000 # at 3 MB/s: ends ~5 s in, after the successor has said hello
RATE=3000000

start_splicer splicer "$SOCK"
start_upstream upstream "$UP" "$A_SIZE@$RATE,$B_SIZE@$RATE" 3
payload "$IN_SIZE" 13 "$WORK/in.bin"
payload "$A_SIZE" 3 "$WORK/a.bin"
payload "$B_SIZE" 3 "$WORK/b.bin"

proxy_args=(--listen "127.0.0.1:$P" --upstream "127.0.0.1:$UP" --splicer "$SOCK" --owner test-restart)
start_proxy proxy1 "${proxy_args[@]}" --audit-log "$WORK/audit1.jsonl"
wait_for 10 "proxy1 to reach splicer" log_has proxy1 "connected to splicer"

spawn clientA bash -c "socat -t 60 -T 60 STDIO TCP4:127.0.0.1:$P <'$WORK/in.bin' >'$WORK/outA.bin'"
wait_for 10 "splicer to relay client A" relays_are "$SOCK" 1
spawn clientB bash -c "socat -t 60 -T 60 STDIO TCP4:127.0.0.1:$P <'$WORK/in.bin' >'$WORK/outB.bin'"
wait_for 10 "splicer to relay client B" relays_are "$SOCK" 2

reap proxy1 KILL
[ "$LAST_RC" -eq 137 ] || fail "proxy1 was not killed by SIGKILL ($LAST_RC)"
running clientA || fail "client A ended when the proxy died"
running clientB || fail "client B ended when the proxy died"
ok "SIGKILL of the proxy mid-transfer leaves both clients connected"

wait_exit 30 clientA
[ "$LAST_RC" -eq 0 ] || fail "client A: socat exited $LAST_RC"
[ "$(sha "$WORK/outA.bin")" = "$(sha "$WORK/a.bin")" ] || fail "client A got the wrong bytes"
running clientB || fail "client B finished too early for this test's timing"
ok "client A's transfer completed without the proxy"

# The successor binds the same port while the relays still hold sockets on it.
start_proxy proxy2 "${proxy_args[@]}" --audit-log "$WORK/audit2.jsonl"
wait_for 10 "proxy2 to reach splicer" log_has proxy2 "connected to splicer"
grep -qE "test-restart; [1-9][0-9]* result\(s\) waiting" "$WORK/proxy2.log" ||
	fail "proxy2 found no results waiting in its mailbox"

wait_exit 30 clientB
[ "$LAST_RC" -eq 0 ] || fail "client B: socat exited $LAST_RC"
[ "$(sha "$WORK/outB.bin")" = "$(sha "$WORK/b.bin")" ] || fail "client B got the wrong bytes"
wait_for 10 "the upstream's records" lines_at_least "$WORK/upstream.record" 2
jq -e -s --arg sha "$(sha "$WORK/in.bin")" --argjson n "$IN_SIZE" \
	'length == 2 and all(.received == $n and .received_sha256 == $sha)' "$WORK/upstream.record" >/dev/null ||
	fail "upstream got the wrong bytes: $(cat "$WORK/upstream.record")"
ok "client B's transfer completed; upstream got both uploads intact"

wait_for 10 "two audit lines from proxy2" lines_at_least "$WORK/audit2.jsonl" 2
jq -e -s --argjson in "$IN_SIZE" --argjson a "$A_SIZE" --argjson b "$B_SIZE" '
	length == 2 and all(.reason == "eof" and .owner == "test-restart" and .bytes_a_to_b == $in and
		(.metadata.client | startswith("127.0.0.1:"))) and
	([.[].bytes_b_to_a] | sort) == [$a, $b]' "$WORK/audit2.jsonl" >/dev/null ||
	fail "bad audit lines: $(cat "$WORK/audit2.jsonl")"
[ "$(lines "$WORK/audit1.jsonl")" -eq 0 ] || fail "proxy1 audited something: $(cat "$WORK/audit1.jsonl")"
ok "the restarted proxy audits both relays (one from its mailbox, one live): eof, exact byte counts"

# It serves new clients, and a graceful stop (SIGTERM) mid-transfer also leaves the relay running.
spawn clientC bash -c "socat -t 60 -T 60 STDIO TCP4:127.0.0.1:$P <'$WORK/in.bin' >'$WORK/outC.bin'"
wait_for 10 "splicer to relay client C" relays_are "$SOCK" 1
reap proxy2 TERM
[ "$LAST_RC" -eq 0 ] || fail "proxy2: SIGTERM gave exit status $LAST_RC"
running clientC || fail "client C ended when the proxy stopped"
wait_exit 30 clientC
[ "$LAST_RC" -eq 0 ] || fail "client C: socat exited $LAST_RC"
[ "$(sha "$WORK/outC.bin")" = "$(sha "$WORK/b.bin")" ] || fail "client C got the wrong bytes"
start_proxy proxy3 "${proxy_args[@]}" --audit-log "$WORK/audit3.jsonl"
wait_for 10 "proxy3 to audit client C" lines_at_least "$WORK/audit3.jsonl" 1
jq -e --argjson in "$IN_SIZE" --argjson b "$B_SIZE" '.reason == "eof" and .bytes_a_to_b == $in and .bytes_b_to_a == $b' \
	"$WORK/audit3.jsonl" >/dev/null || fail "bad audit line: $(cat "$WORK/audit3.jsonl")"
reap proxy3 TERM
[ "$LAST_RC" -eq 0 ] || fail "proxy3: SIGTERM gave exit status $LAST_RC"
ok "SIGTERM mid-transfer exits 0, the relay completes, the next proxy audits it"
