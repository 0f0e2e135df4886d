#!/usr/bin/env bash
# Upstream trouble: refused and timed-out connects close the client; limits.max_pending_connects caps what is held.
source "$(dirname "$0")/lib.sh"

P=$(free_port)
DEAD=$(free_port) # nothing listens here: connects are refused
SOCK=$WORK/splicer.sock

spawn fake python3 "$FAKE_SPLICER" --socket "$SOCK" --record "$WORK/fake.record" --mode refuse
wait_for 10 "the fake splicer" test -S "$SOCK"

start_proxy proxy1 --listen "127.0.0.1:$P" --upstream "127.0.0.1:$DEAD" --splicer "$SOCK"
wait_for 10 "proxy1 to say hello" log_has proxy1 "connected to splicer"
python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 3 >/dev/null || fail "client not closed on ECONNREFUSED"
wait_for 5 "the refused connect in the log" log_has proxy1 "ECONNREFUSED; closed the client"
grep -q "owner shoal-proxy@" "$WORK/proxy1.log" || fail "the default owner is not shoal-proxy@HOSTNAME"
reap proxy1 TERM
[ "$LAST_RC" -eq 0 ] || fail "proxy1: exit status $LAST_RC"
ok "upstream refuses: the client is closed; default owner is shoal-proxy@HOSTNAME"

# An upstream whose accept queue is full drops SYNs: connects hang until the timeout.
HANG=$(free_port)
spawn hang python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $HANG)); s.listen(0)
fill = []
for _ in range(8):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', $HANG))
    except BlockingIOError: pass
    fill.append(c)
print('ready', flush=True)
time.sleep(600)
"
wait_for 10 "the hanging upstream" log_has hang ready
start_proxy proxy2 --listen "127.0.0.1:$P" --upstream "127.0.0.1:$HANG" --splicer "$SOCK" \
	--connect-timeout 1500 --max-pending 2
wait_for 10 "proxy2 to say hello" log_has proxy2 "connected to splicer"
base=$(fd_count proxy2)

spawn probe1 python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 10
spawn probe2 python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 10
sleep 0.5
start=$(date +%s%N)
python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 3 >/dev/null || fail "the third client was held"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
((elapsed_ms < 1000)) || fail "the third client was closed only after ${elapsed_ms} ms"
log_has proxy2 "2 clients pending (limits.max_pending_connects): closing" || fail "the limit was not logged"
ok "--max-pending 2: a third client is closed at once (${elapsed_ms} ms)"

wait_exit 10 probe1
[ "$LAST_RC" -eq 0 ] || fail "client 1 was not closed after the connect timeout"
wait_exit 10 probe2
[ "$LAST_RC" -eq 0 ] || fail "client 2 was not closed after the connect timeout"
wait_for 5 "the timeout in the log" log_has proxy2 "ETIMEDOUT; closed the client"
wait_for 5 "proxy2's fds to return to $base" fds_are proxy2 -eq "$base"
ok "--connect-timeout 1500: held clients are closed after the timeout, nothing leaks"

# SIGTERM with a client still connecting: the proxy waits for its outcome (here the timeout), then exits 0.
timeouts=$(log_count proxy2 "ETIMEDOUT; closed the client")
spawn probe3 python3 "$PEER" probe --connect "127.0.0.1:$P" --timeout 10
wait_for 5 "the third client to be accepted" fds_are proxy2 -gt "$base"
kill -TERM "${PIDS[proxy2]}"
wait_exit 10 proxy2
[ "$LAST_RC" -eq 0 ] || fail "proxy2: exit status $LAST_RC"
[ "$(log_count proxy2 "ETIMEDOUT; closed the client")" -gt "$timeouts" ] ||
	fail "the pending client was not resolved before exit"
wait_exit 10 probe3
[ "$LAST_RC" -eq 0 ] || fail "the pending client was not closed"
ok "SIGTERM waits for a pending client's connect, then exits 0"
