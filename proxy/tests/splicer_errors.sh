#!/usr/bin/env bash
# shoal-proxy against a scripted splicer: busy closes the client, junk is shrugged off, done is audited, no fd leaks.
source "$(dirname "$0")/lib.sh"

UP=$(free_port)
P=$(free_port)
SOCK=$WORK/splicer.sock
AUDIT=$WORK/audit.jsonl

start_upstream upstream "$UP" 1000 1
spawn fake python3 "$FAKE_SPLICER" --socket "$SOCK" --record "$WORK/fake.record" --mode refuse
wait_for 10 "the fake splicer" test -S "$SOCK"
start_proxy proxy --listen "127.0.0.1:$P" --upstream "127.0.0.1:$UP" --splicer "$SOCK" \
	--owner test-errors --audit-log "$AUDIT"
wait_for 10 "the proxy to say hello" log_has proxy "connected to splicer"
base=$(fd_count proxy)

# busy: each client is closed, the proxy keeps nothing.
for i in 1 2 3; do
	python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 5 || fail "client $i not closed after busy"
done
wait_for 5 "the refusal in the log" log_has proxy "splicer refused"
log_has proxy "busy: tasks: the limit of 0 is reached" || fail "the refusal does not say busy"
wait_for 5 "the proxy's fds to return to $base" fds_are proxy -eq "$base"
ok "busy refusals close the client and leak nothing"

jq -e -s '.[0].msg.op == "hello" and .[0].msg.owner == "test-errors"' "$WORK/fake.record" >/dev/null ||
	fail "the first message was not hello as test-errors"
jq -e -s --arg up "127.0.0.1:$UP" '[.[] | select(.msg.op == "splice")] | length == 3 and
	all(.nfds == 2 and .msg.v == 1 and (.msg.metadata | keys) == ["accepted_at_ms","client","upstream"]
	    and .msg.metadata.upstream == $up and (.msg.metadata.client | startswith("127.0.0.1:")))' \
	"$WORK/fake.record" >/dev/null || fail "splice requests are not as PROTOCOL.md says: $(cat "$WORK/fake.record")"
ok "hello and splice requests are well formed"

# A splicer that goes away and comes back as another process: the proxy reconnects.
reap fake TERM
wait_for 5 "the proxy to notice" log_has proxy "lost splicer"
spawn fake2 python3 "$FAKE_SPLICER" --socket "$SOCK" --record "$WORK/fake2.record" --mode bounce
wait_for 10 "the proxy to reconnect" log_count_is proxy "connected to splicer" -ge 2

# bounce: accepted, junk, a done with 1 fd, then the real done: audited, both sockets closed.
python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 5 || fail "the client was not closed after done"
wait_for 5 "the audit line" lines_at_least "$AUDIT" 1
[ "$(lines "$AUDIT")" -eq 1 ] || fail "expected one audit line, got: $(cat "$AUDIT")"
jq -e --arg up "127.0.0.1:$UP" '.event == "done" and .task == "fake-1" and .reason == "eof" and
	.owner == "test-errors" and .bytes_a_to_b == 0 and .bytes_b_to_a == 0 and .duration_ms == 1 and
	.metadata.upstream == $up and (.metadata.client | startswith("127.0.0.1:")) and
	(.tcp_info.client.state | type) == "string" and (.tcp_info.upstream.rtt_us | type) == "number"' \
	"$AUDIT" >/dev/null || fail "bad audit line: $(cat "$AUDIT")"
log_has proxy "malformed message" || fail "the non-JSON datagram was not reported"
log_has proxy "unexpected frobnicated" || fail "the unknown op was not reported"
log_has proxy "bad done" || fail "the done with one fd was not reported"
wait_for 5 "the proxy's fds to return to $base" fds_are proxy -eq "$base"
ok "done is audited with TCP_INFO; junk from splicer is logged and ignored; no fd leaks"

running proxy || fail "the proxy died"
reap proxy TERM
[ "$LAST_RC" -eq 0 ] || fail "SIGTERM: exit status $LAST_RC"
log_has proxy "stopped" || fail "no 'stopped' line"
ok "SIGTERM exits 0"
