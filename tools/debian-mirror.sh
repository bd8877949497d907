# Sourced by tools/fresh-install.sh and tools/run-under-systemd.sh (not run on its own).
# debian_mirror [SUITE]: the Debian mirror the host's apt uses (deb822 sources first, then a
# one-line sources.list entry, for SUITE only when given), else deb.debian.org.
debian_mirror() {
    local suite=${1:-} u=""
    [ -f /etc/apt/sources.list.d/debian.sources ] && u=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    [ -n "$u" ] || u=$(awk -v suite="$suite" '$1 == "deb" && $2 !~ /^\[/ && (suite == "" || $3 == suite) { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    echo "${u:-http://deb.debian.org/debian}"
}
