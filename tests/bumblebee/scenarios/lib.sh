# Shared set-up for bumblebee's real-client tests: a namespace of the test's own with servers, bumblebee, shoal-tunnel.
: "${SHOAL_BUILD_DIR:?SHOAL_BUILD_DIR must name the meson build directory}"
BUMBLEBEE=$SHOAL_BUILD_DIR/services/bumblebee/bumblebee
TUNNEL=$SHOAL_BUILD_DIR/tools/shoal-tunnel/shoal-tunnel
SHOALCTL=$SHOAL_BUILD_DIR/services/shoalctl/shoalctl

if [ "$(id -u)" != 0 ] || ! ip netns add "shoal-bbcheck-$$" 2>/dev/null; then
	echo "SKIP: needs root to create network namespaces"
	exit 77
fi
ip netns del "shoal-bbcheck-$$"

WORK_PREFIX=shoal-bb-test
source "$(dirname "${BASH_SOURCE[0]}")/../../support/scenario.sh"
NS=shoal-bbt-$$
SOCK=$WORK/bumblebee.sock
# The "internet" the tunnelled programs reach: addresses on a veth in $NS whose peer (also in $NS)
# answers nothing, so 198.51.100.2 is an address whose packets go nowhere.
SERVER4=198.51.100.1
SERVER6=2001:db8:1::1

cleanup_more() {
	# bumblebee after a live upgrade is a process we did not spawn directly: find it by its socket.
	local pid
	for pid in $(pgrep -f -- "--socket $SOCK" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	# Whatever still runs in the test's namespace was started by this test.
	for pid in $(ip netns pids "$NS" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	ip netns del "$NS" 2>/dev/null || true
}

in_ns() {
	ip netns exec "$NS" "$@"
}

# The test's namespace: loopback and the "internet" addresses; nothing in it leads outside.
make_world() {
	ip netns add "$NS"
	in_ns ip link set lo up
	in_ns ip link add srv0 type veth peer name srv1
	in_ns ip link set srv0 up
	in_ns ip link set srv1 up
	in_ns ip addr add "$SERVER4/24" dev srv0
	in_ns ip addr add "$SERVER6/64" dev srv0 nodad
}

# start_bumblebee [FLAGS...]: bumblebee (itself unsharing its own namespace) serving $SOCK.
start_bumblebee() {
	spawn bumblebee ip netns exec "$NS" "$BUMBLEBEE" --socket "$SOCK" --log-level debug "$@"
	for _ in $(seq 200); do
		[ -S "$SOCK" ] && "$SHOALCTL" --socket "$SOCK" status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "bumblebee did not start"
}

# tunnel [TUNNEL FLAGS...] -- PROGRAM...: PROGRAM in a namespace whose default route is shoal-tunnel's TUN.
tunnel() {
	in_ns "$TUNNEL" --bumblebee "$SOCK" "$@"
}

bb_status() {
	"$SHOALCTL" --socket "$SOCK" --json status
}

# make_file PATH MIB: MIB mebibytes of incompressible bytes.
make_file() {
	head -c "$(($2 * 1048576))" /dev/urandom >"$1"
}

# serve_http DIR: python's http.server on both server addresses, port 8080.
serve_http() {
	spawn http4 ip netns exec "$NS" python3 -m http.server --bind "$SERVER4" --directory "$1" 8080
	spawn http6 ip netns exec "$NS" python3 -m http.server --bind "$SERVER6" --directory "$1" 8080
	for _ in $(seq 100); do
		in_ns bash -c "exec 3<>/dev/tcp/$SERVER4/8080" 2>/dev/null &&
			in_ns bash -c "exec 3<>/dev/tcp/$SERVER6/8080" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "http servers did not start"
}
