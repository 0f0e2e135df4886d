#!/usr/bin/env bash
# shoal-proxy's command line: --help, --version, --print-config, --config, bad flags (2), start-up failures (1).
source "$(dirname "$0")/lib.sh"

"$PROXY" --help >"$WORK/help" || fail "--help failed"
for flag in --listen --upstream --splicer --owner --log-level --audit-log --max-pending --connect-timeout --config; do
	grep -q -- "$flag" "$WORK/help" || fail "--help does not mention $flag"
done
"$PROXY" --version | grep -qE '^shoal-proxy [0-9]+\.[0-9]+' || fail "--version"
"$PROXY" --print-config >"$WORK/default.json" || fail "--print-config failed"
grep -v '^\s*//' "$WORK/default.json" | jq -e '.limits.max_pending_connects == 1024 and .splicer.reconnect_max_ms == 2000' \
	>/dev/null || fail "--print-config is not the documented defaults"
ok "--help, --version, --print-config"

expect_usage_error() {
	local rc=0
	"$PROXY" "$@" >/dev/null 2>"$WORK/err" || rc=$?
	[ "$rc" -eq 2 ] || fail "'$*' exited $rc, not 2"
	grep -q "^shoal-proxy: " "$WORK/err" || fail "'$*' did not explain itself: $(cat "$WORK/err")"
}
expect_usage_error --upstream 127.0.0.1:1 --splicer /x
expect_usage_error --listen 127.0.0.1:1 --splicer /x
expect_usage_error --listen 127.0.0.1:1 --upstream 127.0.0.1:1
expect_usage_error --listen localhost:80 --upstream 127.0.0.1:1 --splicer /x
expect_usage_error --listen 127.0.0.1:1 --upstream ::1:80 --splicer /x
expect_usage_error --listen 127.0.0.1:1 --upstream 127.0.0.1:0 --splicer /x
expect_usage_error --listen 127.0.0.1:1 --upstream 127.0.0.1:1 --splicer /x --owner "has space"
expect_usage_error --listen 127.0.0.1:1 --upstream 127.0.0.1:1 --splicer /x --log-level loud
expect_usage_error --listen 127.0.0.1:1 --upstream 127.0.0.1:1 --splicer /x --bogus
ok "missing or malformed flags exit 2 with a message"

P=$(free_port)
UP=$(free_port)
printf '// from a file\n{"listen": ["127.0.0.1:%s"], "upstream": "127.0.0.1:%s", "splicer": {"socket": "%s"}, "owner": "from-file"}\n' \
	"$P" "$UP" "$WORK/none.sock" >"$WORK/proxy.json"
start_proxy fromfile --config "$WORK/proxy.json" --owner from-flag
log_has fromfile "owner from-flag" || fail "the flag did not override the file"
log_has fromfile "listening on 127.0.0.1:$P" || fail "the file's listen address was not used"

# The port is taken now: a second proxy cannot start.
rc=0
"$PROXY" --listen "127.0.0.1:$P" --upstream "127.0.0.1:$UP" --splicer /x >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 1 ] || fail "binding a taken port exited $rc, not 1"
grep -q "EADDRINUSE" "$WORK/err" || fail "no EADDRINUSE in: $(cat "$WORK/err")"
rc=0
"$PROXY" --listen "127.0.0.1:0" --upstream "127.0.0.1:$UP" --splicer /x --audit-log "$WORK/no/such/dir/a.log" \
	>/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" -eq 1 ] || fail "an unopenable audit log exited $rc, not 1"
grep -q "ENOENT" "$WORK/err" || fail "no ENOENT in: $(cat "$WORK/err")"
ok "--config with flags over it; a taken port or an unopenable audit log exits 1"

# Stopping works while splicer is unreachable, at once.
start=$(date +%s%N)
reap fromfile INT
[ "$LAST_RC" -eq 0 ] || fail "SIGINT gave exit status $LAST_RC"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
((elapsed_ms < 1000)) || fail "stopping took ${elapsed_ms} ms"
ok "SIGINT exits 0 at once while splicer is unreachable"
