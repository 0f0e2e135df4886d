#!/usr/bin/env bash
# shoalctl cancel of a relay whose client does not read: done (cancelled) is audited, unsent bytes counted, client sees EOF.
source "$(dirname "$0")/lib.sh"
need_splicer

UP=$(free_port)
P=$(free_port)
SOCK=$WORK/splicer.sock
AUDIT=$WORK/audit.jsonl
UP_SIZE=50000000

start_splicer splicer "$SOCK"
start_upstream upstream "$UP" "$UP_SIZE" 21
start_proxy proxy --listen "127.0.0.1:$P" --upstream "127.0.0.1:$UP" --splicer "$SOCK" \
	--owner test-cancel --audit-log "$AUDIT"
wait_for 10 "the proxy to reach splicer" log_has proxy "connected to splicer"

# A client that reads nothing until told to, then counts what arrives until EOF.
spawn client python3 -c "
import os, socket, time
s = socket.create_connection(('127.0.0.1', $P))
while not os.path.exists('$WORK/go'):
    time.sleep(0.05)
n = 0
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    n += len(b)
print('received', n, flush=True)
"
wait_for 10 "splicer to relay the client" relays_are "$SOCK" 1
sleep 1 # let the buffers fill: splicer now holds bytes it cannot write
task=$("$SHOALCTL" --socket "$SOCK" list --json | jq -r '.tasks[0].task')
"$SHOALCTL" --socket "$SOCK" cancel "$task" >/dev/null || fail "shoalctl cancel $task failed"
wait_for 10 "the audit line" lines_at_least "$AUDIT" 1
jq -e --arg task "$task" --argjson n "$UP_SIZE" '.task == $task and .reason == "cancelled" and
	.bytes_a_to_b == 0 and .bytes_b_to_a > 0 and .bytes_b_to_a + (.unsent_b_to_a // 0) <= $n' \
	"$AUDIT" >/dev/null || fail "bad audit line: $(cat "$AUDIT")"
ok "cancel: done with reason cancelled is audited ($(jq -c '{bytes_b_to_a, unsent_b_to_a}' "$AUDIT"))"

touch "$WORK/go"
wait_exit 20 client
[ "$LAST_RC" -eq 0 ] || fail "the client failed: $(cat "$WORK/client.log")"
expected=$(jq '.bytes_b_to_a' "$AUDIT")
grep -qx "received $expected" "$WORK/client.log" ||
	fail "the client got $(cat "$WORK/client.log"), splicer wrote $expected"
ok "the client reads exactly what splicer wrote, then EOF: the proxy closed the sockets after done"
reap proxy TERM
[ "$LAST_RC" -eq 0 ] || fail "SIGTERM gave exit status $LAST_RC"
