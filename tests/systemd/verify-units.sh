#!/usr/bin/env bash
# Runs `systemd-analyze verify` on every unit in systemd/, with binaries pointed at this build; any complaint fails.
set -euo pipefail
src=$1
build=$2
command -v systemd-analyze >/dev/null || exit 77
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$src"/systemd/*.socket "$src"/systemd/*.service; do
	sed -e "s|/usr/local/sbin/\([a-z-]*\)|$build/services/\1/\1|g" \
	    -e "s|/usr/local/bin/shoalctl|$build/services/shoalctl/shoalctl|g" "$unit" > "$tmp/$(basename "$unit")"
done
cd "$tmp"
out=$(systemd-analyze verify ./*.socket ./*.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
	echo "$out"
	exit 1
fi
echo "verified: $(ls | tr '\n' ' ')"
