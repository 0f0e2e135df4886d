# curl downloads 50 MB through shoal-tunnel → bumblebee → kernel socket → HTTP server, IPv4 and IPv6; checksums compared.
source "$(dirname "$0")/lib.sh"

make_world
mkdir "$WORK/www"
make_file "$WORK/www/big.bin" 50
want=$(sha256sum <"$WORK/www/big.bin")
serve_http "$WORK/www"
start_bumblebee

for url in "http://$SERVER4:8080/big.bin" "http://[$SERVER6]:8080/big.bin"; do
	rm -f "$WORK/got.bin"
	tunnel --report "$WORK/report.json" -- curl -sS --fail --max-time 120 -o "$WORK/got.bin" "$url" ||
		fail "curl $url failed"
	[ "$(sha256sum <"$WORK/got.bin")" = "$want" ] || fail "checksum differs for $url"
	python3 - "$WORK/report.json" <<'PY' || fail "report for $url"
import json, sys
r = json.load(open(sys.argv[1]))
flows = [f for f in r["flows"] if f.get("upgraded")]
assert len(flows) == 1, r
assert flows[0]["relay_bytes_down"] >= 50 * 1048576, flows[0]
PY
	ok "50 MB over $url, checksum identical"
done

# The flows ended, and bumblebee says so.
sleep 1
bb_status | python3 -c '
import json, sys
s = json.load(sys.stdin)
c = s["counters_flows"]
assert c["upgraded"] >= 2, c
assert s["flows"]["active"] == 0, s["flows"]
assert c["drop_malformed"] == 0, c
print("bumblebee: upgraded", c["upgraded"], "packets out/in", c["packets_out"], c["packets_in"])
'
ok "bumblebee ended every flow"
