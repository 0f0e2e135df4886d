# A 200 MB curl download through bumblebee while it live-upgrades 5 times: checksum identical, no reset.
source "$(dirname "$0")/lib.sh"

make_world
mkdir "$WORK/www"
make_file "$WORK/www/big.bin" 200
want=$(sha256sum <"$WORK/www/big.bin")
serve_http "$WORK/www"
start_bumblebee --upgrade-binary "$BUMBLEBEE"

# Rate-limited so the transfer spans every upgrade (200 MB at 25 MB/s: about 8 s).
spawn curl tunnel -- curl -sS --fail --max-time 120 --limit-rate 25M -o "$WORK/got.bin" "http://$SERVER4:8080/big.bin"
sleep 1
for i in 1 2 3 4 5; do
	"$SHOALCTL" --socket "$SOCK" upgrade >"$WORK/upgrade-$i.txt" || fail "upgrade $i failed"
	ok "upgrade $i: $(tr '\n' ' ' <"$WORK/upgrade-$i.txt")"
	sleep 1
done
reap curl none
((LAST_RC == 0)) || fail "curl exit $LAST_RC"
[ "$(sha256sum <"$WORK/got.bin")" = "$want" ] || fail "checksum differs"
bb_status | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["upgrades"] == 5, s["upgrades"]
print("bumblebee: upgrades", s["upgrades"], "dropped congested", s["counters_flows"]["drop_congested"])
'
ok "200 MB through 5 live upgrades, checksum identical"
