#!/bin/sh
# install.sh -- install irqagent from this checkout, as root (README "Install and run").
#
#   ./install.sh              install, or upgrade (a running irqagent.service is restarted)
#   ./install.sh --uninstall  remove the program and the units; keep /etc/irqagent and
#                             /var/lib/irqagent (the journal of original masks)
#
# Layout (the units' ExecStart= points here):
#   /opt/irqagent/                        a venv of Debian's python3 (/usr/bin/python3) with
#                                         irqagent and its dependencies from PyPI
#   /usr/local/sbin/irqagent              -> /opt/irqagent/bin/irqagent
#   /usr/local/lib/systemd/system/        irqagent.service, irqagent-apply.service (not enabled)
#   /etc/irqagent/irqagent.toml           the commented example, only if none exists
#   /var/lib/irqagent/                    state directory, mode 0700
#
# Debian and Ubuntu forbid pip in the system Python (PEP 668), hence the venv. It is
# built from /usr/bin/python3 (not a python3 under /root, e.g. pyenv: the units'
# ProtectHome=yes hides /root). When python3 or its venv module is missing, apt-get
# installs python3 and python3-venv. Environment: PYTHON (default /usr/bin/python3),
# PREFIX (default /opt/irqagent).
set -eu

SRC=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
PREFIX=${PREFIX:-/opt/irqagent}
SBIN=/usr/local/sbin
UNITDIR=/usr/local/lib/systemd/system
CONFDIR=/etc/irqagent
STATEDIR=/var/lib/irqagent
UNITS="irqagent.service irqagent-apply.service"

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 2; }

systemd_running() { [ -d /run/systemd/system ]; }

uninstall() {
    if systemd_running; then
        for unit in $UNITS; do
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
    for unit in $UNITS; do rm -f "$UNITDIR/$unit"; done
    systemd_running && systemctl daemon-reload
    [ -L "$SBIN/irqagent" ] && rm -f "$SBIN/irqagent"
    rm -rf "$PREFIX"
    say "removed $PREFIX, $SBIN/irqagent and the units; kept $CONFDIR and $STATEDIR"
}

ACTION=install
case "${1:-}" in
    "") ;;
    --uninstall) ACTION=uninstall ;;
    -h|--help) sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown option '$1' (usage: $0 [--uninstall])" ;;
esac
[ $# -le 1 ] || die "too many arguments (usage: $0 [--uninstall])"
[ "$(id -u)" = 0 ] || die "run as root (it installs to $PREFIX, $SBIN and $UNITDIR)"
[ "$(uname -s)" = Linux ] || die "irqagent runs on Linux only"
if [ $ACTION = uninstall ]; then
    uninstall
    exit 0
fi

[ -f "$SRC/pyproject.toml" ] && [ -d "$SRC/irqagent" ] || die "$SRC is not an irqagent checkout"

# Debian's python3 and its venv module (python3-venv); the venv needs ensurepip.
apt_install() {
    command -v apt-get >/dev/null || die "$PYTHON cannot create a venv and there is no apt-get: install python3 (>= 3.9) with its venv module"
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || die "apt-get install $* failed"
    }
}
[ -x "$PYTHON" ] || apt_install python3 python3-venv
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PYTHON is $("$PYTHON" -V 2>&1): irqagent needs Python >= 3.9"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
fi

# The venv: recreated when it was built from another interpreter (e.g. after python3.11 -> 3.13).
if [ -x "$PREFIX/bin/python" ] && [ "$(readlink -f "$PREFIX/bin/python")" = "$(readlink -f "$PYTHON")" ]; then
    say "upgrading $PREFIX"
else
    say "creating $PREFIX (venv of $PYTHON, $("$PYTHON" -V 2>&1))"
    rm -rf "$PREFIX"
    "$PYTHON" -m venv "$PREFIX" || die "$PYTHON -m venv $PREFIX failed"
fi
"$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location "$SRC" \
    || die "pip install into $PREFIX failed"

install -d -m 0755 "$SBIN" "$UNITDIR"
ln -sfn "$PREFIX/bin/irqagent" "$SBIN/irqagent"
for unit in $UNITS; do
    install -m 0644 "$SRC/systemd/$unit" "$UNITDIR/$unit"
done
install -d -m 0755 "$CONFDIR"
if [ -e "$CONFDIR/irqagent.toml" ]; then
    say "kept $CONFDIR/irqagent.toml (the shipped example is $SRC/config/irqagent.toml)"
else
    install -m 0644 "$SRC/config/irqagent.toml" "$CONFDIR/irqagent.toml"
fi
install -d -m 0700 "$STATEDIR"
chmod 0700 "$STATEDIR"
if systemd_running; then
    systemctl daemon-reload
    # an upgrade: a running daemon goes on with the new code (the one-shot is not re-run)
    systemctl try-restart irqagent.service
fi
say "installed $("$SBIN/irqagent" --version) as $SBIN/irqagent; units in $UNITDIR (enable one: see README)"
