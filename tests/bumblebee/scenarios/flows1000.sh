# 1,000 concurrent TCP flows from one tunnelled program, each echoing its own bytes through its own kernel socket.
source "$(dirname "$0")/lib.sh"

make_world
start_bumblebee
spawn echo ip netns exec "$NS" python3 "$(dirname "$0")/echo_server.py" "$SERVER4" 7000
sleep 0.5
tunnel --report "$WORK/report.json" -- python3 "$(dirname "$0")/many_clients.py" "$SERVER4" 7000 1000 ||
	fail "not every flow echoed"
python3 - "$WORK/report.json" <<'PY' || fail "report"
import json, sys
r = json.load(open(sys.argv[1]))
up = [f for f in r["flows"] if f.get("upgraded")]
assert len(up) >= 1000, len(up)
PY
ok "1000 concurrent flows upgraded and echoed"
