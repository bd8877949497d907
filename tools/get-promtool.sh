#!/bin/sh
# get-promtool.sh DIR -- print the path of a working promtool, unpacking Debian's
# `prometheus` package into DIR when needed (apt-get download + dpkg -x: nothing is
# installed, no root needed; apt's package lists must be there: apt-get update).
# Exit 1, with the reason on stderr, when it cannot be had.
set -eu
DIR=${1:?usage: $0 DIR}
if [ -x "$DIR/usr/bin/promtool" ] && "$DIR/usr/bin/promtool" --version >/dev/null 2>&1; then
    echo "$DIR/usr/bin/promtool"
    exit 0
fi
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { echo "get-promtool.sh: no apt-get/dpkg-deb here" >&2; exit 1; }
mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && apt-get download -q prometheus >/dev/null 2>"$TMP/apt.log") \
    || { echo "get-promtool.sh: apt-get download prometheus failed: $(grep -v '^W:' "$TMP/apt.log" | tail -1)" >&2; exit 1; }
dpkg-deb -x "$TMP"/prometheus_*.deb "$TMP/x"
install -d "$DIR/usr/bin" && install -m 0755 "$TMP/x/usr/bin/promtool" "$DIR/usr/bin/promtool"
"$DIR/usr/bin/promtool" --version >/dev/null 2>&1 || { echo "get-promtool.sh: the unpacked promtool does not run" >&2; exit 1; }
echo "$DIR/usr/bin/promtool"
