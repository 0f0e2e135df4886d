# A client whose upstream refuses sees a refusal (not "connected, then closed"); a handshake that times out is reset.
source "$(dirname "$0")/lib.sh"

make_world
start_bumblebee

# Nothing listens on port 9: with --confirm the upstream is tried first and the client's SYN is answered by a RST.
# (curl -v names the errno: "Connection refused" is what a RST answering the SYN gives.)
for url in "http://$SERVER4:9/" "http://[$SERVER6]:9/"; do
	rc=0
	tunnel --confirm -- curl -v --max-time 20 "$url" 2>"$WORK/curl.err" || rc=$?
	((rc == 7)) || fail "$url: curl exit $rc, want 7: $(tail -3 "$WORK/curl.err")"
	grep -q "Connection refused" "$WORK/curl.err" || fail "$url: not a refusal: $(tail -3 "$WORK/curl.err")"
	ok "no listener behind $url: $(grep -m1 "Connection refused" "$WORK/curl.err")"
done

# An upstream that never answers (198.51.100.2 is on the veth link, where nothing answers):
# bumblebee's handshake timeout (500 ms) ends the flow with a RST, long before curl's own timeout.
start=$(date +%s%N)
rc=0
tunnel --confirm --timeout-ms 500 --drain-ms 0 -- curl -v --max-time 20 "http://198.51.100.2:80/" 2>"$WORK/curl.err" || rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
((rc == 7)) || fail "timeout: curl exit $rc, want 7: $(tail -3 "$WORK/curl.err")"
grep -q "Connection refused" "$WORK/curl.err" || fail "timeout: not a reset SYN: $(tail -3 "$WORK/curl.err")"
((elapsed < 5000)) || fail "timeout took ${elapsed} ms"
ok "handshake timeout: curl refused after ${elapsed} ms"

bb_status | python3 -c '
import json, sys
c = json.load(sys.stdin)["counters_flows"]
assert c["ended_rejected"] >= 2, c
assert c["ended_timeout"] >= 1, c
print("bumblebee: rejected", c["ended_rejected"], "timeout", c["ended_timeout"])
'
