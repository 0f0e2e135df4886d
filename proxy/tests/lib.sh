# Shared set-up for shoal-proxy's integration tests: a temp dir, processes tracked by PID, waits, helpers.
: "${SHOAL_BUILD_DIR:?SHOAL_BUILD_DIR must name the meson build directory}"
TESTS_DIR=${SHOAL_PROXY_TESTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
PROXY=$SHOAL_BUILD_DIR/proxy/shoal-proxy
SPLICER=$SHOAL_BUILD_DIR/services/splicer/splicer
SHOALCTL=$SHOAL_BUILD_DIR/services/shoalctl/shoalctl
PEER=$TESTS_DIR/tcp_peer.py
FAKE_SPLICER=$TESTS_DIR/fake_splicer.py

WORK_PREFIX=shoal-proxy-test
source "$TESTS_DIR/../../tests/support/scenario.sh"

need_splicer() {
	if [ ! -x "$SPLICER" ]; then
		echo "SKIP: $SPLICER is not built"
		exit 77
	fi
}

running() {
	kill -0 "${PIDS[$1]}" 2>/dev/null
}

# wait_for SECONDS WHAT CMD...: polls CMD every 50 ms.
wait_for() {
	local seconds=$1 what=$2
	shift 2
	local i
	for ((i = 0; i < seconds * 20; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.05
	done
	fail "timed out after ${seconds}s waiting for $what"
}

# wait_exit SECONDS NAME: waits for a process to end by itself; status in LAST_RC.
wait_exit() {
	local seconds=$1 name=$2
	wait_for "$seconds" "$name to finish" bash -c "! kill -0 ${PIDS[$name]} 2>/dev/null"
	reap "$name" none
}

log_has() {
	grep -qsF -- "$2" "$WORK/$1.log"
}

log_count() {
	grep -csF -- "$2" "$WORK/$1.log" || true
}

free_port() {
	python3 "$PEER" free-port
}

listening() {
	ss -Hltn "sport = :$1" | grep -q .
}

sha() {
	sha256sum "$1" | cut -d' ' -f1
}

fd_count() {
	ls "/proc/${PIDS[$1]}/fd" | wc -l
}

lines() {
	if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# start_splicer NAME SOCKET [ARGS...]
start_splicer() {
	local name=$1 sock=$2
	shift 2
	spawn "$name" "$SPLICER" --socket "$sock" --log-level debug "$@"
	wait_for 10 "$name to serve" bash -c "'$SHOALCTL' --socket '$sock' status >/dev/null 2>&1"
}

# start_upstream NAME PORT PLAN SEED [HOST]: tcp_peer serve; its record is $WORK/NAME.record.
start_upstream() {
	local name=$1 port=$2 plan=$3 seed=$4 host=${5:-127.0.0.1}
	spawn "$name" python3 "$PEER" serve --listen "$host:$port" --plan "$plan" --seed "$seed" \
		--record "$WORK/$name.record"
	wait_for 10 "$name to listen" listening "$port"
}

# start_proxy NAME ARGS...: shoal-proxy at debug level, waits until it listens.
start_proxy() {
	local name=$1
	shift
	spawn "$name" "$PROXY" --log-level debug "$@"
	wait_for 10 "$name to listen" log_has "$name" "listening on"
}

# Conditions for wait_for.
relays_are() { # SOCKET N: splicer has exactly N relays
	[ "$("$SHOALCTL" --socket "$1" list --json | jq '.tasks | length')" -eq "$2" ]
}
lines_at_least() { # FILE N
	[ "$(lines "$1")" -ge "$2" ]
}
fds_are() { # NAME OP N: the process's open fd count compared with test(1)'s OP
	[ "$(fd_count "$1")" "$2" "$3" ]
}
log_count_is() { # NAME TEXT OP N
	[ "$(log_count "$1" "$2")" "$3" "$4" ]
}

# payload SIZE SEED FILE: the bytes tcp_peer serve sends for that plan entry.
payload() {
	python3 "$PEER" gen --size "$1" --seed "$2" --out "$3"
}
