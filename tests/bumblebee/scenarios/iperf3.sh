# iperf3 both directions through bumblebee, IPv4 and IPv6: the tunnelled client's TCP becomes a kernel socket that carries it.
source "$(dirname "$0")/lib.sh"

make_world
start_bumblebee
spawn iperf4 ip netns exec "$NS" iperf3 -s -B "$SERVER4" -p 5201
spawn iperf6 ip netns exec "$NS" iperf3 -s -B "$SERVER6" -p 5202
sleep 0.5

for target in "$SERVER4 5201" "$SERVER6 5202"; do
	set -- $target
	for dir in "" "-R"; do
		tunnel -- iperf3 -c "$1" -p "$2" -t 2 $dir -J >"$WORK/iperf.json" 2>"$WORK/iperf.err" ||
			fail "iperf3 -c $1 $dir failed: $(tail -3 "$WORK/iperf.err")"
		bps=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["end"]["sum_received"]["bits_per_second"]))' "$WORK/iperf.json")
		((bps > 10000000)) || fail "iperf3 -c $1 $dir: only $bps bit/s"
		ok "iperf3 to $1 ${dir:-(client sends)}: $((bps / 1000000)) Mbit/s"
	done
done
