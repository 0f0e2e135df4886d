# Shared shell for scenario tests (proxy/tests, tests/bumblebee/scenarios): a temp dir, processes tracked by PID, clean-up, spawn/reap.
# The sourcing script sets WORK_PREFIX first and may define cleanup_more (run before the temp dir goes).
set -euo pipefail

WORK=$(mktemp -d "/tmp/${WORK_PREFIX:-shoal-test}.XXXXXX")
declare -A PIDS=() # name -> pid of every process this test started and has not reaped yet
LAST_RC=0

cleanup() {
	local rc=$?
	local name
	for name in "${!PIDS[@]}"; do
		kill -TERM "${PIDS[$name]}" 2>/dev/null || true
	done
	for _ in $(seq 40); do
		local alive=0
		for name in "${!PIDS[@]}"; do
			kill -0 "${PIDS[$name]}" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.05
	done
	for name in "${!PIDS[@]}"; do
		kill -KILL "${PIDS[$name]}" 2>/dev/null || true
		wait "${PIDS[$name]}" 2>/dev/null || true
	done
	if declare -F cleanup_more >/dev/null; then
		cleanup_more || true
	fi
	if ((rc != 0 && rc != 77)); then
		for f in "$WORK"/*.log; do
			[ -e "$f" ] || continue
			echo "----- $(basename "$f") (last 40 lines) -----" >&2
			tail -n 40 "$f" >&2
		done
	fi
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

ok() {
	echo "ok: $*"
}

# spawn NAME CMD...: runs CMD in the background, output to $WORK/NAME.log, PID in PIDS[NAME].
spawn() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS[$name]=$!
}

# reap NAME [SIGNAL]: signals (unless SIGNAL is "none") and waits; the exit status goes to LAST_RC.
reap() {
	local name=$1 sig=${2:-TERM} pid=${PIDS[$1]}
	[ "$sig" = none ] || kill -"$sig" "$pid" 2>/dev/null || true
	LAST_RC=0
	# (braces: bash's "Killed" notice for a signalled job goes to /dev/null too)
	{ wait "$pid"; } 2>/dev/null || LAST_RC=$?
	unset "PIDS[$name]"
}
