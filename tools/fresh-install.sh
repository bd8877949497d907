#!/usr/bin/env bash
# fresh-install.sh CHECKOUT [DEB]
#
# README's install commands on fresh Debian machines: for each suite, build a minimal
# Debian rootfs with mmdebstrap (apt and nothing else: no python3), copy the checkout
# to /root/irqagent in it, and as root in a chroot run README's first command
#
#     ./install.sh && irqagent audit
#
# with Debian's system python3 (install.sh apt-installs python3 and python3-venv, pip
# reaches PyPI), then check the layout, an upgrade (a second ./install.sh) and
# ./install.sh --uninstall. With DEB (make deb), a second fresh rootfs of each suite from
# bookworm on gets `apt-get install ./irqagent_*.deb` (dependencies from Debian's
# archive), `irqagent audit`, and `apt-get purge`. No systemd runs here (chroot):
# tools/run-under-systemd.sh checks the units under a real one.
#
# The chroot sees /proc and /sys mounted read-only: the audit reads this machine's IRQs
# and nothing can write them. Nothing is cached: every run builds its rootfs anew.
# Prints PASS/FAIL lines and "N passed, N failed"; exit 1 on any FAIL. Run as root.
#
# Environment:
#   SUITES        Debian suites to try          default: bookworm
#   IRQF_MIRROR   Debian mirror                 default: the host's apt source
#   IRQF_WORK     work directory                default: a new directory under /var/tmp
#   IRQF_KEEP=1   keep the work directory

set -uo pipefail

CHECKOUT=$(readlink -f "${1:?usage: $0 CHECKOUT [DEB]}")
DEB=${2:+$(readlink -f "$2")}
SUITES=${SUITES:-bookworm}
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # root's PATH on Debian
README_INSTALL='./install.sh && irqagent audit'
T_START=$(date +%s)

npass=0 nfail=0
pass() { npass=$((npass + 1)); echo "PASS $1: $2"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $1: $2"; }
die() { echo "FAIL fresh-install: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$CHECKOUT/install.sh" ] || die "$CHECKOUT: no install.sh"
[ -z "$DEB" ] || [ -f "$DEB" ] || die "$DEB: no such package"
grep -qxF "$README_INSTALL" "$CHECKOUT/README.md" || die "README.md no longer says '$README_INSTALL': update this script"
if ! command -v mmdebstrap >/dev/null; then
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2 || die "cannot install mmdebstrap"
fi

. "$(dirname "$(readlink -f "$0")")/debian-mirror.sh"
MIRROR=${IRQF_MIRROR:-$(debian_mirror)}   # any suite: SUITES may name several
WORK=${IRQF_WORK:-$(mktemp -d /var/tmp/irqagent-fresh.XXXXXX)}
mkdir -p "$WORK"
MOUNTS=()
cleanup() {
    local m
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${MOUNTS[$i]}
        mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    if [ "${IRQF_KEEP:-0}" = 1 ]; then echo "fresh-install: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# chroot ROOT CMD...: as root would, with the host's CA bundle for pip and apt (TLS proxies)
in_root() {
    local root=$1; shift
    chroot "$root" /usr/bin/env -i PATH=$ROOT_PATH HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} ${NO_PROXY:+NO_PROXY=$NO_PROXY} \
        ${CA:+PIP_CERT=/etc/fresh-install-ca.crt} "$@"
}
CA=""
for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    [ -n "$f" ] && [ -f "$f" ] && { CA=$f; break; }
done

# prepare ROOT: resolv.conf, CA bundle, /proc and /sys read-only
prepare() {
    local root=$1
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
    [ -n "$CA" ] && cp "$CA" "$root/etc/fresh-install-ca.crt"
    mount -t proc -o ro,nosuid,nodev,noexec proc "$root/proc" && MOUNTS+=("$root/proc") || die "mount proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys" && MOUNTS+=("$root/sys") || die "mount sysfs"
    touch "$root/proc/irq/default_smp_affinity" 2>/dev/null && die "/proc/irq is writable in $root"
}
release() {
    local root=$1
    umount "$root/sys" "$root/proc" || die "umount in $root"
}
audit_ok() {  # audit_ok LOG: the audit printed its header and summary
    grep -q '^irqagent [0-9.]* audit of /$' "$1" && grep -qE '^audit: [0-9]+ IRQs, [0-9]+ compliant' "$1"
}

for suite in $SUITES; do
    base=$WORK/$suite-base
    t0=$(date +%s)
    mmdebstrap --variant=minbase "$suite" "$base" "$MIRROR" > "$WORK/$suite-mmdebstrap.log" 2>&1 \
        || { tail -5 "$WORK/$suite-mmdebstrap.log"; fail "$suite rootfs" "mmdebstrap failed"; continue; }
    pass "$suite rootfs" "fresh minbase $suite from $MIRROR in $(($(date +%s) - t0)) s; python3: $([ -e "$base/usr/bin/python3" ] && echo present || echo absent)"

    # --- README's first command, from a checkout in /root ---------------------------------
    root=$WORK/$suite-source
    cp -a "$base" "$root"
    mkdir -p "$root/root/irqagent"
    tar -C "$CHECKOUT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$root/root/irqagent" -xf -
    prepare "$root"
    t0=$(date +%s)
    in_root "$root" sh -c "cd /root/irqagent && $README_INSTALL" > "$WORK/$suite-install.log" 2>&1
    rc=$?
    if [ $rc -le 1 ] && audit_ok "$WORK/$suite-install.log"; then
        pass "$suite readme-install" "'$README_INSTALL' in $(($(date +%s) - t0)) s, exit $rc: $(grep -m1 '^install.sh: creating' "$WORK/$suite-install.log"); '$(grep -m1 '^audit:' "$WORK/$suite-install.log")'"
    else
        fail "$suite readme-install" "exit $rc: $(tail -5 "$WORK/$suite-install.log" | tr '\n' '|')"
    fi
    layout=$(in_root "$root" sh -c 'readlink /usr/local/sbin/irqagent; readlink -f /opt/irqagent/bin/python;
        ls /usr/local/lib/systemd/system; stat -c %a /var/lib/irqagent; cmp /etc/irqagent/irqagent.toml /root/irqagent/config/irqagent.toml && echo config' 2>&1 | tr '\n' ' ')
    case "$layout" in
        "/opt/irqagent/bin/irqagent /usr/bin/python3."*" irqagent-apply.service irqagent.service 700 config ")
            pass "$suite layout" "$layout" ;;
        *) fail "$suite layout" "$layout" ;;
    esac
    if in_root "$root" sh -c 'cd /root/irqagent && ./install.sh' > "$WORK/$suite-upgrade.log" 2>&1 \
        && grep -q 'upgrading /opt/irqagent' "$WORK/$suite-upgrade.log" && in_root "$root" irqagent --version >/dev/null; then
        pass "$suite upgrade" "a second ./install.sh: $(head -1 "$WORK/$suite-upgrade.log")"
    else
        fail "$suite upgrade" "$(tail -3 "$WORK/$suite-upgrade.log" | tr '\n' '|')"
    fi
    in_root "$root" sh -c 'echo journal > /var/lib/irqagent/journal.json'
    out=$(in_root "$root" sh -c 'cd /root/irqagent && ./install.sh --uninstall' 2>&1)
    left=$(in_root "$root" sh -c 'ls -d /opt/irqagent /usr/local/sbin/irqagent /usr/local/lib/systemd/system/irqagent*.service /etc/irqagent/irqagent.toml /var/lib/irqagent/journal.json' 2>/dev/null | tr '\n' ' ')
    [ "$left" = "/etc/irqagent/irqagent.toml /var/lib/irqagent/journal.json " ] \
        && pass "$suite uninstall" "$out" || fail "$suite uninstall" "$out; left: $left"
    release "$root"
    rm -rf "$root"

    # --- the Debian package -------------------------------------------------------------------
    if [ -n "$DEB" ] && [ "$suite" != bullseye ] && [ "$suite" != buster ]; then
        root=$WORK/$suite-deb
        cp -a "$base" "$root"
        cp "$DEB" "$root/root/"
        prepare "$root"
        t0=$(date +%s)
        in_root "$root" sh -c "apt-get update -q && apt-get install -y -q /root/$(basename "$DEB") && irqagent audit" > "$WORK/$suite-deb.log" 2>&1
        rc=$?
        if [ $rc -le 1 ] && audit_ok "$WORK/$suite-deb.log"; then
            pass "$suite deb-install" "apt-get install ./$(basename "$DEB") && irqagent audit in $(($(date +%s) - t0)) s, exit $rc: '$(grep -m1 '^audit:' "$WORK/$suite-deb.log")'"
        else
            fail "$suite deb-install" "exit $rc: $(tail -5 "$WORK/$suite-deb.log" | tr '\n' '|')"
        fi
        # no systemd here: deb-systemd-helper's enablement is its symlink
        state=$(in_root "$root" sh -c 'command -v irqagent; ls /etc/systemd/system/multi-user.target.wants/ | grep irqagent;
            stat -c %a /var/lib/irqagent; dpkg-query -W -f="\${Conffiles}" irqagent | cut -d" " -f2; python3 -c "import psutil, pyroute2; print(\"debian-deps\")"' 2>&1 | tr '\n' ' ')
        case "$state" in
            "/usr/sbin/irqagent irqagent.service 700 /etc/irqagent/irqagent.toml debian-deps ")
                pass "$suite deb-layout" "$state" ;;
            *) fail "$suite deb-layout" "$state" ;;
        esac
        in_root "$root" apt-get purge -y -q irqagent > "$WORK/$suite-purge.log" 2>&1
        left=$(in_root "$root" sh -c 'ls -d /var/lib/irqagent /etc/irqagent /usr/sbin/irqagent /lib/systemd/system/irqagent.service /etc/systemd/system/multi-user.target.wants/irqagent.service' 2>/dev/null)
        [ -z "$left" ] && pass "$suite deb-purge" "apt-get purge irqagent leaves no state, config, program, unit or enablement" \
            || fail "$suite deb-purge" "left: $left"
        release "$root"
        rm -rf "$root"
    fi
    rm -rf "$base"
done

echo "fresh-install: $SUITES in $(($(date +%s) - T_START)) s"
echo "$npass passed, $nfail failed"
[ $nfail = 0 ]
