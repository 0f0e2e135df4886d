#!/usr/bin/env bash
# Data both ways through shoal-proxy → splicer → upstream over IPv4 and IPv6 (socat) and HTTP (curl), checksummed and audited.
source "$(dirname "$0")/lib.sh"
need_splicer

UP=$(free_port)
P=$(free_port)
SOCK=$WORK/splicer.sock
AUDIT=$WORK/audit.jsonl
IN_SIZE=2000000
UP_SIZE=3000000

start_splicer splicer "$SOCK"
start_upstream upstream "$UP" "$UP_SIZE" 7
start_proxy proxy --listen "127.0.0.1:$P" --listen "[::1]:$P" --upstream "127.0.0.1:$UP" \
	--splicer "$SOCK" --owner test-relay --audit-log "$AUDIT"
wait_for 10 "the proxy to reach splicer" log_has proxy "connected to splicer"
base=$(fd_count proxy)

payload "$IN_SIZE" 11 "$WORK/in.bin"
payload "$UP_SIZE" 7 "$WORK/up.bin"

# Two clients at once, one per address family; each sends 2 MB while receiving 3 MB.
spawn client4 bash -c "socat -t 60 -T 60 STDIO TCP4:127.0.0.1:$P <'$WORK/in.bin' >'$WORK/out4.bin'"
spawn client6 bash -c "socat -t 60 -T 60 STDIO 'TCP6:[::1]:$P' <'$WORK/in.bin' >'$WORK/out6.bin'"
wait_exit 60 client4
[ "$LAST_RC" -eq 0 ] || fail "socat over IPv4 exited $LAST_RC"
wait_exit 60 client6
[ "$LAST_RC" -eq 0 ] || fail "socat over IPv6 exited $LAST_RC"
[ "$(sha "$WORK/out4.bin")" = "$(sha "$WORK/up.bin")" ] || fail "IPv4 client got the wrong bytes"
[ "$(sha "$WORK/out6.bin")" = "$(sha "$WORK/up.bin")" ] || fail "IPv6 client got the wrong bytes"
wait_for 10 "the upstream's records" lines_at_least "$WORK/upstream.record" 2
jq -e -s --arg sha "$(sha "$WORK/in.bin")" --argjson n "$IN_SIZE" \
	'length == 2 and all(.received == $n and .received_sha256 == $sha)' "$WORK/upstream.record" >/dev/null ||
	fail "upstream got the wrong bytes: $(cat "$WORK/upstream.record")"
ok "2 MB up and 3 MB down on each of two concurrent clients (IPv4, IPv6), checksums match"

wait_for 10 "two audit lines" lines_at_least "$AUDIT" 2
jq -e -s --argjson a "$IN_SIZE" --argjson b "$UP_SIZE" --arg up "127.0.0.1:$UP" '
	length == 2 and all(.reason == "eof" and .bytes_a_to_b == $a and .bytes_b_to_a == $b and
		.owner == "test-relay" and .metadata.upstream == $up and
		(.metadata.accepted_at_ms | type) == "number" and (.duration_ms | type) == "number" and
		(.tcp_info.client.rtt_us | type) == "number" and (.tcp_info.client.bytes_received == $a + 1) and
		(.tcp_info.upstream.bytes_received == $b + 1)) and
	([.[].metadata.client | if startswith("[::1]:") then 6 elif startswith("127.0.0.1:") then 4 else 0 end] | sort) == [4, 6]' \
	"$AUDIT" >/dev/null || fail "bad audit lines: $(cat "$AUDIT")"
ok "one audit line per connection: reason eof, byte counts, metadata and TCP_INFO"

# HTTP through a second proxy to an IPv6 upstream: curl downloads a 4 MB file.
HTTP=$(free_port)
P2=$(free_port)
mkdir "$WORK/www"
payload 4000000 5 "$WORK/www/file.bin"
spawn http python3 -m http.server --bind ::1 --directory "$WORK/www" "$HTTP"
wait_for 10 "the HTTP server" listening "$HTTP"
start_proxy proxy2 --listen "127.0.0.1:$P2" --upstream "[::1]:$HTTP" --splicer "$SOCK" \
	--owner test-relay-http --audit-log "$WORK/audit2.jsonl"
wait_for 10 "the second proxy to reach splicer" log_has proxy2 "connected to splicer"
for i in 1 2 3; do
	curl -sS --max-time 30 -o "$WORK/got$i.bin" "http://127.0.0.1:$P2/file.bin" || fail "curl $i failed"
	[ "$(sha "$WORK/got$i.bin")" = "$(sha "$WORK/www/file.bin")" ] || fail "curl $i got the wrong bytes"
done
wait_for 10 "three HTTP audit lines" lines_at_least "$WORK/audit2.jsonl" 3
jq -e -s --arg up "[::1]:$HTTP" 'length == 3 and all(.metadata.upstream == $up and .bytes_b_to_a > 4000000)' \
	"$WORK/audit2.jsonl" >/dev/null || fail "bad HTTP audit lines: $(cat "$WORK/audit2.jsonl")"
ok "curl downloads through the proxy to an IPv6 upstream match"

# Nothing of a finished relay stays in the proxy; SIGTERM exits 0.
wait_for 5 "the proxy's fds to return to $base" fds_are proxy -eq "$base"
relays_are "$SOCK" 0 || fail "splicer still has relays"
reap proxy TERM
[ "$LAST_RC" -eq 0 ] || fail "proxy: SIGTERM gave exit status $LAST_RC"
reap proxy2 INT
[ "$LAST_RC" -eq 0 ] || fail "proxy2: SIGINT gave exit status $LAST_RC"
ok "no fds left behind; SIGTERM and SIGINT exit 0"
