# bumblebee as nobody with no capabilities at all in the root namespace: its namespace, TUN and listeners still work, curl gets through.
source "$(dirname "$0")/lib.sh"

# /dev/net/tun is 0600 on this machine (0666 on a stock Debian): give the test a 0666 node of its
# own, bind-mounted in a private mount namespace, so the host's device is left as it is.
mknod "$WORK/tun" c 10 200
chmod 0666 "$WORK/tun"
chmod 0755 "$WORK"
mkdir -m 0777 "$WORK/run"
SOCK=$WORK/run/bumblebee.sock

make_world
mkdir "$WORK/www"
make_file "$WORK/www/file.bin" 10
want=$(sha256sum <"$WORK/www/file.bin")
serve_http "$WORK/www"

spawn bumblebee ip netns exec "$NS" unshare --mount --propagation private -- sh -c \
	'mount --bind "$1" /dev/net/tun && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$2" --socket "$3"' \
	sh "$WORK/tun" "$BUMBLEBEE" "$SOCK"
for _ in $(seq 200); do
	[ -S "$SOCK" ] && "$SHOALCTL" --socket "$SOCK" status >/dev/null 2>&1 && break
	sleep 0.05
done
pid=$(bb_status | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
[ "$(awk '/^Uid:/ {print $2}' /proc/$pid/status)" = 65534 ] || fail "bumblebee does not run as nobody"
[ "$(awk '/^CapEff:/ {print $2}' /proc/$pid/status)" = 0000000000000000 ] || fail "bumblebee has capabilities"
[ "$(awk '/^CapBnd:/ {print $2}' /proc/$pid/status)" = 0000000000000000 ] || fail "bumblebee could regain capabilities"
ok "bumblebee pid $pid runs as uid 65534 with no capabilities"

tunnel -- curl -sS --fail --max-time 60 -o "$WORK/got.bin" "http://$SERVER4:8080/file.bin" || fail "curl failed"
[ "$(sha256sum <"$WORK/got.bin")" = "$want" ] || fail "checksum differs"
ok "10 MB through an unprivileged bumblebee, checksum identical"
