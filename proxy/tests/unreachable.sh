#!/usr/bin/env bash
# splicer unreachable: clients are closed (not held), the proxy keeps running, logs once per outage, and recovers.
source "$(dirname "$0")/lib.sh"
need_splicer

UP=$(free_port)
P=$(free_port)
SOCK=$WORK/splicer.sock
UP_SIZE=500000

start_upstream upstream "$UP" "$UP_SIZE" 9
payload 300000 17 "$WORK/in.bin"
payload "$UP_SIZE" 9 "$WORK/up.bin"

# through CLIENT_NAME: one socat transfer, checked.
through() {
	spawn "$1" bash -c "socat -t 30 -T 30 STDIO TCP4:127.0.0.1:$P <'$WORK/in.bin' >'$WORK/$1.bin'"
	wait_exit 30 "$1"
	[ "$LAST_RC" -eq 0 ] || fail "$1: socat exited $LAST_RC"
	[ "$(sha "$WORK/$1.bin")" = "$(sha "$WORK/up.bin")" ] || fail "$1 got the wrong bytes"
}

# refused N: N clients in a row are each closed without a byte.
refused() {
	local i
	for ((i = 1; i <= $1; i++)); do
		python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 3 >/dev/null ||
			fail "client $i was not closed while splicer is unreachable"
	done
}

# No splicer at all when the proxy starts.
start_proxy proxy --listen "127.0.0.1:$P" --upstream "127.0.0.1:$UP" --splicer "$SOCK" \
	--owner test-unreachable --audit-log "$WORK/audit.jsonl"
wait_for 5 "the proxy to report splicer unreachable" log_has proxy "cannot reach splicer"
refused 3
running proxy || fail "the proxy died"
sleep 2.5 # several reconnect attempts (backoff up to 2 s) must not add log lines
[ "$(log_count proxy "cannot reach splicer")" -eq 1 ] || fail "the outage was logged more than once"
[ "$(log_count proxy "refusing clients while splicer is unreachable")" -eq 1 ] ||
	fail "refusals were logged more than once"
ok "no splicer: 3 clients closed at once, proxy running, one line each for outage and refusals"

start_splicer splicer "$SOCK"
wait_for 5 "the proxy to reach splicer" log_has proxy "connected to splicer"
log_has proxy "3 client(s) refused meanwhile" || fail "the recovery line does not count the refusals"
through client1
ok "splicer appears: the proxy connects within the backoff bound and relays"

# splicer goes away (SIGTERM, nothing in flight): refused again, logged once more; then back.
reap splicer TERM
wait_for 5 "the proxy to notice" log_has proxy "lost splicer"
refused 2
running proxy || fail "the proxy died"
[ "$(log_count proxy "refusing clients while splicer is unreachable")" -eq 2 ] ||
	fail "the second outage's refusals were not logged exactly once"
start_splicer splicer2 "$SOCK"
wait_for 5 "the proxy to reconnect" log_count_is proxy "connected to splicer" -eq 2
through client2
ok "splicer lost and back: refused meanwhile, relays again after"

wait_for 10 "two audit lines" lines_at_least "$WORK/audit.jsonl" 2
jq -e -s --argjson b "$UP_SIZE" 'length == 2 and all(.reason == "eof" and .bytes_a_to_b == 300000 and .bytes_b_to_a == $b)' \
	"$WORK/audit.jsonl" >/dev/null || fail "bad audit lines: $(cat "$WORK/audit.jsonl")"
reap proxy TERM
[ "$LAST_RC" -eq 0 ] || fail "SIGTERM gave exit status $LAST_RC"
ok "audited; SIGTERM exits 0"
