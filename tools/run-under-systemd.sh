#!/usr/bin/env bash
# run-under-systemd.sh CHECKOUT [DEB]
#
# Boot a real systemd (Debian 12's systemd 252, in systemd-nspawn) on a minimal
# Debian bookworm rootfs, install an irqagent checkout into it with README's command
# (./install.sh, in a chroot before the boot), and check its two units:
# start/READY/STATUS, journal, sandbox (capabilities, /proc/irq writable, the other
# kernel tunables read-only, devices), reload, SIGUSR1, uevents, watchdog, stop, the
# one-shot unit, systemd-analyze security, oneshot/daemon switching (ordered), and
# ./install.sh --uninstall. With DEB (make deb): apt-get install of the package under
# the running systemd (enabled and started the Debian way), apt-get remove (no
# service left running), apt-get purge (no state left).
# Prints PASS/FAIL/INFO/SKIP lines and "N passed, N failed"; exit 1 on any FAIL.
#
# Run as root on a Debian 12 machine whose PID 1 need not be systemd. Needs apt
# (systemd-container, mmdebstrap) and pip (PyPI) registries.
# (Adapted from the project's shared harness: same checks, plus the ones above.)
#
# Safety: nspawn mounts the host's /proc/irq read-only for the container's PID 1,
# but ProtectProc= makes systemd mount a fresh procfs for the service, where the
# real /proc/irq (and /proc/sys) is writable again. So the script adds a drop-in
# ReadOnlyPaths=/proc/irq to both units: the agent never writes the real masks.
# Masks are only ever written in synthetic trees (irqagent.devtools gen-tree)
# under /srv in the container. The shipped sandbox itself is probed with
# ExecStart=/bin/sleep (access(2) checks only, no writes).
#
# Environment:
#   IRQH_CACHE   cache dir (base rootfs)          default: /var/tmp/irqagent-systemd-harness/cache
#                (.ci/run gives it a new, empty one: nothing is cached across CI runs)
#   IRQH_RUNS    per-run dirs (overlay upper)     default: /var/tmp/irqagent-systemd-harness/runs
#   IRQH_CGROUP  unified (cgroup v2 in the container, default) | auto (nspawn's pick)
#   IRQH_MIRROR  Debian mirror                    default: the host's apt source
#   IRQH_KEEP=1  keep the run dir (logs, overlay upper) afterwards
#   IRQH_MAX_EXPOSURE  highest accepted systemd-analyze exposure (default 2.0)

set -uo pipefail

CHECKOUT=$(readlink -f "${1:?usage: $0 CHECKOUT [DEB]}")
DEB=${2:+$(readlink -f "$2")}
README_INSTALL='./install.sh && irqagent audit'
HERE=$(dirname "$(readlink -f "$0")")
CACHE=${IRQH_CACHE:-/var/tmp/irqagent-systemd-harness/cache}
RUNS=${IRQH_RUNS:-/var/tmp/irqagent-systemd-harness/runs}
CGROUP_MODE=${IRQH_CGROUP:-unified}
MAX_EXPOSURE=${IRQH_MAX_EXPOSURE:-2.0}
SUITE=bookworm
# python3-venv is left out (./install.sh installs it); python3-psutil and python3-pyroute2
# are the .deb's dependencies (the container has no network: apt-get install ./DEB offline);
# prometheus-node-exporter scrapes the agent's metrics file (README's monitoring setup).
PKGS=systemd,systemd-sysv,dbus,libpam-systemd,python3,kmod,procps,iproute2,python3-psutil,python3-pyroute2,prometheus-node-exporter,curl
T_START=$(date +%s.%N)

npass=0 nfail=0
pass() { npass=$((npass + 1)); echo "PASS $1: $2"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $1: $2"; }
info() { echo "INFO $1: $2"; }
skip() { echo "SKIP $1: $2"; }
die() { echo "FAIL harness: $*"; nfail=$((nfail + 1)); exit 1; }
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$CHECKOUT/pyproject.toml" ] && [ -f "$CHECKOUT/systemd/irqagent.service" ] || die "$CHECKOUT: not an irqagent checkout"
[ -z "$DEB" ] || [ -f "$DEB" ] || die "$DEB: no such package"
grep -qxF "$README_INSTALL" "$CHECKOUT/README.md" || die "README.md no longer says '$README_INSTALL': update this script"

# --- host tools --------------------------------------------------------------------
if ! command -v systemd-nspawn >/dev/null || ! command -v mmdebstrap >/dev/null; then
    echo "harness: installing systemd-container mmdebstrap" >&2
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd-container mmdebstrap >&2 \
        || die "apt-get install systemd-container mmdebstrap failed"
fi
for tool in systemd-nspawn mmdebstrap nsenter chroot mount; do command -v $tool >/dev/null || die "missing $tool"; done

. "$HERE/debian-mirror.sh"
MIRROR=${IRQH_MIRROR:-$(debian_mirror "$SUITE")}

# --- cached base rootfs: Debian bookworm + systemd + python3 ------------------------
KEY=$(printf '%s\n' "$SUITE" "$PKGS" base-v2 | sha256sum | cut -c1-12)
BASE=$CACHE/base-$KEY
mkdir -p "$CACHE" "$RUNS"
exec 9>"$CACHE/.lock" && flock 9   # one builder of the cache at a time
if [ ! -e "$BASE/.complete" ]; then
    echo "harness: building $BASE from $MIRROR (cold cache, about a minute)" >&2
    rm -rf "$BASE.tmp" && mkdir -p "$BASE.tmp"
    mmdebstrap --variant=minbase --include="$PKGS" "$SUITE" "$BASE.tmp/rootfs" "$MIRROR" > "$BASE.tmp/mmdebstrap.log" 2>&1 \
        || { tail -20 "$BASE.tmp/mmdebstrap.log"; die "mmdebstrap failed (log: $BASE.tmp/mmdebstrap.log)"; }
    rm -rf "$BASE" && mv "$BASE.tmp" "$BASE" && touch "$BASE/.complete"
fi
flock -u 9

# --- per-run overlay ------------------------------------------------------------------
RUN=$(mktemp -d "$RUNS/run.XXXXXX")
ROOT=$RUN/root
UP=$RUN/layer
MACHINE=irqh-$$
CGNAME=irqh-harness-$$
NSPAWN_PID=""
cleanup() {
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID" 2>/dev/null
        wait "$NSPAWN_PID" 2>/dev/null
    fi
    for m in "$ROOT/sys" "$ROOT/proc"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    mountpoint -q "$ROOT" 2>/dev/null && { umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; }
    mountpoint -q "$RUN/layer" 2>/dev/null && { umount "$RUN/layer" 2>/dev/null || umount -l "$RUN/layer"; }
    for h in unified systemd; do
        [ -d "/sys/fs/cgroup/$h/$CGNAME" ] && find "/sys/fs/cgroup/$h/$CGNAME" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null
    if [ "${IRQH_KEEP:-0}" = 1 ]; then echo "harness: kept $RUN" >&2; else rm -rf "$RUN"; fi
    echo "harness: cleaned up, $(secs "$T_START" "$(now)") s in all" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The overlay's upper layer lives on a tmpfs (fast, and gone at umount) unless IRQH_KEEP=1.
UP=$RUN/layer
mkdir -p "$UP" "$ROOT"
[ "${IRQH_KEEP:-0}" = 1 ] || mount -t tmpfs -o size=4g,mode=0755 irqh-layer "$UP" || die "tmpfs mount failed"
mkdir -p "$UP/upper" "$UP/work"
if ! mount -t overlay overlay -o "lowerdir=$BASE/rootfs,upperdir=$UP/upper,workdir=$UP/work" "$ROOT" 2>/dev/null; then
    echo "harness: no overlayfs, copying the rootfs" >&2
    rmdir "$ROOT" && cp -a "$BASE/rootfs" "$ROOT" || die "copy of rootfs failed"
fi

# --- install the checkout with README's command, in a chroot (with the network) -----------
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # root's PATH on Debian
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=$ROOT_PATH HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} ${NO_PROXY:+NO_PROXY=$NO_PROXY} \
    ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} ${CA:+PIP_CERT=/etc/harness-ca.crt} "$@"; }
mkdir -p "$ROOT/root/irqagent"
tar -C "$CHECKOUT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$ROOT/root/irqagent" -xf - || die "copy of checkout failed"
CA=""
for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    [ -n "$f" ] && [ -f "$f" ] && { cp "$f" "$ROOT/etc/harness-ca.crt"; CA=yes; break; }
done
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null
# the audit at the end of README's command reads this machine's /proc and /sys: read-only
mount -t proc -o ro,nosuid,nodev,noexec proc "$ROOT/proc" && mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys" \
    || die "cannot mount /proc and /sys read-only in the rootfs"
T_INSTALL=$(now)
in_root sh -c "cd /root/irqagent && $README_INSTALL" > "$RUN/install.log" 2>&1; rc=$?
umount "$ROOT/sys" "$ROOT/proc"
if [ $rc -le 1 ] && grep -qE '^audit: [0-9]+ IRQs' "$RUN/install.log"; then
    pass readme-install "'$README_INSTALL' in $(secs "$T_INSTALL" "$(now)") s, exit $rc: $(grep -m1 '^install.sh: apt-get' "$RUN/install.log"); $(grep -m1 '^install.sh: installed' "$RUN/install.log"); '$(grep -m1 '^audit:' "$RUN/install.log")'"
else
    tail -20 "$RUN/install.log"; die "'$README_INSTALL' failed (exit $rc)"
fi
VERSION=$(in_root irqagent --version 2>&1) || die "installed irqagent does not run: $VERSION"
for unit in "$CHECKOUT"/systemd/*.service; do   # every ExecStart= binary exists as installed
    exe=$(sed -n 's/^ExecStart=[-+!@:]*\([^ ]*\).*/\1/p' "$unit" | head -1)
    if in_root test -x "$exe" && cmp -s "$unit" "$ROOT/usr/local/lib/systemd/system/$(basename "$unit")"; then
        pass "layout[$(basename "$unit")]" "ExecStart=$exe -> $(readlink "$ROOT$exe"); unit in /usr/local/lib/systemd/system"
    else
        fail "layout[$(basename "$unit")]" "ExecStart=$exe or /usr/local/lib/systemd/system/$(basename "$unit") missing"
    fi
done

# the units as ./install.sh put them + a harness-only ReadOnlyPaths=/proc/irq drop-in
for u in irqagent.service irqagent-apply.service; do
    mkdir -p "$ROOT/etc/systemd/system/$u.d"
    printf '[Service]\n# harness: the real /proc/irq stays read-only for the agent\nReadOnlyPaths=/proc/irq\n' \
        > "$ROOT/etc/systemd/system/$u.d/10-harness-safety.conf"
done
# a probe with the shipped sandbox and a harmless ExecStart, to see what the sandbox allows
sed -e 's/^Type=notify/Type=simple/' -e 's#^ExecStart=.*#ExecStart=/bin/sleep infinity#' \
    -e '/^\(WatchdogSec\|ExecReload\|NotifyAccess\|Conflicts\|Restart\)=/d' -e '/^ExecStartPre=/d' \
    "$CHECKOUT/systemd/irqagent.service" > "$ROOT/etc/systemd/system/irqh-probe.service"
in_root systemctl enable irqagent.service >/dev/null 2>&1 || die "systemctl enable irqagent.service failed"
head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ROOT/etc/machine-id" && echo >> "$ROOT/etc/machine-id"
echo irqh > "$ROOT/etc/hostname"

# synthetic kernel trees for the write paths (the real /proc/irq stays read-only)
HAVE_TREES=0
if in_root /opt/irqagent/bin/python -m irqagent.devtools gen-tree /srv/irqtree --profile cloud-hypervisor-320 2>>"$RUN/gentree.log" \
    && in_root /opt/irqagent/bin/python -m irqagent.devtools gen-tree /srv/irqtree-apply --profile cloud-hypervisor-320 2>>"$RUN/gentree.log" \
    && in_root /opt/irqagent/bin/python -m irqagent.devtools gen-tree /srv/bigtree --cpus 300 --irqs 2000 --ext-dest-id --dmi-vendor QEMU 2>>"$RUN/gentree.log"; then
    HAVE_TREES=1
fi
EXEC_START=$(sed -n 's/^ExecStart=//p' "$CHECKOUT/systemd/irqagent.service" | head -1)
EXEC_APPLY=$(sed -n 's/^ExecStart=//p' "$CHECKOUT/systemd/irqagent-apply.service" | head -1)

# --- boot ------------------------------------------------------------------------------
unset SYSTEMD_NSPAWN_API_VFS_WRITABLE
[ "$CGROUP_MODE" = unified ] && export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
T_BOOT=$(now)
(
    # Without systemd on the host, nspawn --keep-unit uses the caller's cgroup and
    # creates supervisor/ and payload/ in it: give it a cgroup of its own.
    for h in unified systemd; do
        if [ -d "/sys/fs/cgroup/$h" ] && mkdir -p "/sys/fs/cgroup/$h/$CGNAME" 2>/dev/null; then
            echo $BASHPID > "/sys/fs/cgroup/$h/$CGNAME/cgroup.procs" 2>/dev/null
        fi
    done
    exec systemd-nspawn -D "$ROOT" -M "$MACHINE" -b --register=no --keep-unit --private-network --console=passive
) > "$RUN/console.log" 2>&1 < /dev/null &
NSPAWN_PID=$!
LEADER=""
for _ in $(seq 1 150); do
    LEADER=$(ps -o pid= --ppid "$NSPAWN_PID" 2>/dev/null | head -1 | tr -d ' ')
    [ -n "$LEADER" ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 0.2
done
[ -n "$LEADER" ] || { cat "$RUN/console.log"; die "systemd-nspawn did not start a container"; }
E() { nsenter -t "$LEADER" -a "$@"; }
SC() { E systemctl --no-pager "$@"; }
prop() { SC show -p "$2" --value "$1"; }
STATE=""
for _ in $(seq 1 90); do
    STATE=$(E timeout 60 systemctl is-system-running --wait 2>/dev/null)
    case "$STATE" in running|degraded|maintenance|stopping) break ;; esac
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    sleep 1
done
case "$STATE" in
    running) pass boot "$(E systemctl --version | head -1) in nspawn (cgroups in the container: $(E sh -c 'if [ -d /sys/fs/cgroup/unified ]; then echo hybrid v1+v2; elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo unified v2; else echo legacy v1; fi')) reached 'running' in $(secs "$T_BOOT" "$(now)") s" ;;
    degraded) fail boot "'degraded': $(SC --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')" ;;
    *) cat "$RUN/console.log"; die "systemd did not finish booting (state '$STATE')" ;;
esac
E findmnt -no OPTIONS /proc/irq | grep -q '^ro' \
    && pass safety "/proc/irq is read-only in the container ($(E findmnt -no OPTIONS /proc/irq | cut -d, -f1))" \
    || die "/proc/irq is writable in the container: stopping before anything runs"

# what the shipped sandbox leaves writable (probe, not the agent; access(2) only)
SC start irqh-probe.service; sleep 1
ppid=$(prop irqh-probe.service MainPID)
probe=$(E nsenter -t "$ppid" -m sh -c 'for f in /proc/irq/default_smp_affinity /proc/sys/vm/swappiness /proc/sysrq-trigger /proc/kcore /var/lib/irqagent /etc; do
    if [ -w "$f" ]; then printf "%s rw, " "$f"; elif [ -r "$f" ]; then printf "%s ro, " "$f"; else printf "%s none, " "$f"; fi; done
    printf "/proc mounted "; findmnt -no OPTIONS /proc | cut -d, -f1' 2>&1)
SC stop irqh-probe.service
case "$probe" in
    "/proc/irq/default_smp_affinity rw"*) pass sandbox-proc-irq "the shipped sandbox leaves /proc/irq writable (fresh procfs from ProtectProc=, although PID 1 sees it ro): $probe" ;;
    *) fail sandbox-proc-irq "the agent could not write /proc/irq under the shipped sandbox: $probe" ;;
esac
case "$probe" in
    *"/proc/sys/vm/swappiness ro, /proc/sysrq-trigger none, /proc/kcore none, "*)   # sysrq-trigger is 0200: not writable now
        pass sandbox-tunables "ReadOnlyPaths=/InaccessiblePaths= close the rest of the fresh procfs: /proc/sys read-only, /proc/sysrq-trigger not writable, /proc/kcore hidden" ;;
    *) fail sandbox-tunables "the fresh procfs of ProtectProc= leaves other kernel tunables open: $probe" ;;
esac

jsince() { E journalctl --no-pager -o cat --since "@$1" "${@:2}"; }
wait_log() {  # wait_log SINCE TIMEOUT REGEX [journalctl args]: prints the epoch of the first match
    local since=$1 timeout=$2 re=$3 end line
    end=$(awk -v a="$(now)" -v t="$timeout" 'BEGIN { printf "%.3f", a + t }')
    while awk -v a="$(now)" -v e="$end" 'BEGIN { exit !(a < e) }'; do
        line=$(E journalctl --no-pager -o short-unix --since "@$since" "${@:4}" | grep -E -m1 "$re") \
            && { echo "${line%% *}"; return 0; }
        sleep 0.2
    done
    return 1
}
main_pid() { prop irqagent.service MainPID; }
tamper() { E sh -c "echo 0-319 > /srv/irqtree/proc/irq/$1/smp_affinity_list"; }
TAMPER_IRQ=4  # cloud-hypervisor-320: an IO-APIC IRQ (Cloud Hypervisor's IO-APIC reaches APIC IDs 0-255)

# --- 1. as shipped, against the real (read-only) /proc/irq ----------------------------
if [ "$(prop irqagent.service ActiveState)/$(prop irqagent.service SubState)" = active/running ]; then
    pass enabled-at-boot "irqagent.service (systemctl enable) is active (running) after boot, pid $(main_pid)"
else
    fail enabled-at-boot "irqagent.service is $(prop irqagent.service ActiveState)/$(prop irqagent.service SubState) after boot"
fi
started=$(E journalctl --no-pager -o cat -b -u irqagent.service | grep -m1 'started on')
case "$started" in
    *"no uevents"*) fail uevent-socket "$started" ;;
    *uevents*) pass uevent-socket "netlink uevent socket opened inside the sandbox: '$started'" ;;
    *) fail uevent-socket "no 'started on' line in the journal" ;;
esac
errs=$(E journalctl --no-pager -o cat -b _SYSTEMD_UNIT=irqagent.service -p err)
[ -z "$errs" ] && pass journal-errors "no err-priority lines from the agent" || fail journal-errors "$errs"

T0=$(now); SC stop irqagent.service; T1=$(now)
res="$(prop irqagent.service Result) status=$(prop irqagent.service ExecMainStatus)"
if [ "$res" = "success status=0" ] && [ "$(ms "$T0" "$T1")" -lt 2000 ]; then
    pass stop "systemctl stop returned in $(ms "$T0" "$T1") ms, Result=success, exit 0; log: '$(jsince "$T0" -u irqagent.service | grep -m1 stopping)'"
else
    fail stop "$(ms "$T0" "$T1") ms, $res"
fi

T0=$(now); SC start irqagent.service; rc=$?; T1=$(now)
if [ $rc = 0 ] && [ "$(prop irqagent.service SubState)" = running ]; then
    ie=$(prop irqagent.service InactiveExitTimestampMonotonic); ex=$(prop irqagent.service ExecMainStartTimestampMonotonic)
    ae=$(prop irqagent.service ActiveEnterTimestampMonotonic)
    pass start-ready "active (running); systemctl start returned in $(ms "$T0" "$T1") ms; READY $(( (ae - ex) / 1000 )) ms after exec, $(( (ae - ie) / 1000 )) ms after the start job began (incl. ExecStartPre)"
else
    fail start-ready "rc=$rc, $(prop irqagent.service ActiveState)/$(prop irqagent.service SubState)"
fi
st=$(SC status irqagent.service 2>&1 | grep -m1 'Status:' | sed 's/^ *//')
[ -n "$st" ] && pass status-line "systemctl status shows $st" || fail status-line "no Status: line in systemctl status"

pid=$(main_pid)
guard=$(E nsenter -t "$pid" -m sh -c '[ -w /proc/irq/default_smp_affinity ] && echo rw || echo ro')
[ "$guard" = ro ] || { SC stop irqagent.service; die "the harness drop-in did not make /proc/irq read-only for the agent"; }
caps=$(E awk '/^CapEff|^CapBnd|^NoNewPrivs|^Seccomp:/ { printf "%s%s ", $1, $2 }' "/proc/$pid/status")
rootro=$(E awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo" | tail -1)
statedir=$(E stat -c '%a' /var/lib/irqagent 2>/dev/null)
# CAP_SYS_RAWIO (bit 17) only, for the msr driver -- if the container has it at all (nspawn drops it)
rawio=$(printf '%016x' $(( 0x$(E awk '/^CapBnd/ { print $2 }' /proc/1/status) & 0x20000 )))
if [ "$caps" = "CapEff:$rawio CapBnd:$rawio NoNewPrivs:1 Seccomp:2 " ] && [ "${rootro%%,*}" = ro ] && [ "$statedir" = 700 ]; then
    pass sandbox "$caps(CAP_SYS_RAWIO or nothing: the container's PID 1 has CapBnd $(E awk '/^CapBnd/ { print $2 }' /proc/1/status)) / mounted ${rootro%%,*}, /var/lib/irqagent mode $statedir"
else
    fail sandbox "$caps/ mounted $rootro, /var/lib/irqagent mode $statedir"
fi
modp=$(SC status irqagent.service 2>&1 | grep -m1 'ExecStartPre=' | sed 's/^ *//')
[ -n "$modp" ] && info exec-start-pre "$modp (the '-' prefix tolerates it; no modules in a container)"
devices=$(prop irqagent.service DeviceAllow | tr '\n' ' ')
case "$devices" in
    *"char-cpu/cpuid r"*) case "$devices" in *"char-cpu/msr r"*) pass devices "DevicePolicy=$(prop irqagent.service DevicePolicy), DeviceAllow=$devices" ;;
        *) fail devices "DeviceAllow=$devices (want char-cpu/msr r)" ;; esac ;;
    *) fail devices "DeviceAllow=$devices (want char-cpu/cpuid r)" ;;
esac

for u in irqagent.service irqagent-apply.service; do
    out=$(E systemd-analyze security --no-pager "$u" 2>&1)
    level=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -n "$level" ] && awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }'; then
        pass "security[$u]" "$(echo "$out" | grep 'Overall exposure' | sed 's/^→ //')"
    else
        fail "security[$u]" "exposure '${level:-?}' above $MAX_EXPOSURE: $(echo "$out" | tail -1)"
    fi
    info "security[$u]" "open items: $(echo "$out" | awk '/^✗/ { print $2 }' | tr '\n' ' ')"
done

# --- 2. the write path, uevents, signals, reload: a drop-in moves the agent to a tree ---
DROPIN=/etc/systemd/system/irqagent.service.d
if [ $HAVE_TREES = 1 ]; then
    E sh -c "printf '[Service]\nExecStart=\nExecStart=%s --root /srv/irqtree --state-dir /var/lib/irqagent/tree --metrics-file /var/lib/irqagent/metrics.prom\nReadWritePaths=/srv/irqtree\n' '$EXEC_START' > $DROPIN/50-harness-root.conf"
    SC daemon-reload; T0=$(now); SC restart irqagent.service
    st=$(prop irqagent.service StatusText)
    writes=$(echo "$st" | sed -n 's/.* \([0-9]*\) writes.*/\1/p')
    files=$(E ls /var/lib/irqagent | tr '\n' ' ')
    if [ "${writes:-0}" -gt 0 ] && echo "$st" | grep -q ' 0 non-compliant' && E test -s /var/lib/irqagent/metrics.prom; then
        pass write-path "sandboxed agent wrote the tree (drop-in: ExecStart= --root, ReadWritePaths=): STATUS=\"$st\"; state dir: $files"
    else
        fail write-path "STATUS=\"$st\"; state dir: $files; $(jsince "$T0" -u irqagent.service -p warning | tail -3)"
    fi

    tamper $TAMPER_IRQ; T0=$(now)
    E ip link add hvh0 type veth peer name hvh1
    if t=$(wait_log "$T0" 8 'pass [0-9]+ \(uevent' -u irqagent.service); then
        pass uevent "veth created in the container's netns -> '$(jsince "$T0" -u irqagent.service | grep -m1 '(uevent')' after $(ms "$T0" "$t") ms"
    else
        fail uevent "no uevent pass within 8 s of 'ip link add'"
    fi
    E ip link del hvh0 2>/dev/null; sleep 1.5

    tamper $TAMPER_IRQ; T0=$(now)
    SC kill -s SIGUSR1 --kill-who=main irqagent.service
    t=$(wait_log "$T0" 5 'pass [0-9]+ \(SIGUSR1' -u irqagent.service) \
        && pass sigusr1 "'$(jsince "$T0" -u irqagent.service | grep -m1 '(SIGUSR1')' after $(ms "$T0" "$t") ms" \
        || fail sigusr1 "no SIGUSR1 pass within 5 s"
else
    skip write-path "irqagent.devtools gen-tree unavailable ($(tail -1 "$RUN/gentree.log"))"
fi

RELOAD="reload"; [ -z "$(prop irqagent.service ExecReload)" ] && RELOAD="kill -s SIGHUP --kill-who=main"
E cp /etc/irqagent/irqagent.toml /etc/irqagent/irqagent.toml.shipped 2>/dev/null
pid=$(main_pid); T0=$(now)
E sh -c 'printf "[policy]\nbogus = 1\n" > /etc/irqagent/irqagent.toml'
SC $RELOAD irqagent.service; rc=$?
if wait_log "$T0" 5 'reload refused' -u irqagent.service >/dev/null && [ "$(main_pid)" = "$pid" ]; then
    pass reload-invalid "systemctl $RELOAD rc=$rc; '$(jsince "$T0" -u irqagent.service | grep -m1 'reload refused' | cut -c1-110)...'; same pid, still $(prop irqagent.service SubState)"
else
    fail reload-invalid "rc=$rc; $(jsince "$T0" -u irqagent.service | tail -3)"
fi
if [ $HAVE_TREES = 1 ]; then newconf='[policy]\nexclude_cpus = "1"\n'; re='pass [0-9]+ \(reload.* [1-9][0-9]* writes'; else newconf='[daemon]\ninterval = 30\n'; re='configuration reloaded'; fi
T0=$(now); E sh -c "printf '$newconf' > /etc/irqagent/irqagent.toml"
SC $RELOAD irqagent.service; rc=$?; T1=$(now)
if t=$(wait_log "$T0" 5 "$re" -u irqagent.service); then
    order=$(jsince "$T0" -u irqagent.service | grep -E -m2 'Reloaded|configuration reloaded' | tr '\n' '|')
    pass reload-valid "systemctl $RELOAD rc=$rc in $(ms "$T0" "$T1") ms; '$(jsince "$T0" -u irqagent.service | grep -E -m1 "$re")' after $(ms "$T0" "$t") ms; journal order: $order"
else
    fail reload-valid "rc=$rc; $(jsince "$T0" -u irqagent.service | tail -3)"
fi
E sh -c '[ -f /etc/irqagent/irqagent.toml.shipped ] && mv /etc/irqagent/irqagent.toml.shipped /etc/irqagent/irqagent.toml || rm -f /etc/irqagent/irqagent.toml'
SC $RELOAD irqagent.service; sleep 0.5

# --- 3. watchdog: WatchdogSec=4s by drop-in (shipped value shown), then SIGSTOP --------
info watchdog-shipped "WatchdogSec=$(prop irqagent.service WatchdogUSec) (ping every half), Restart=$(prop irqagent.service Restart), RestartUSec=$(prop irqagent.service RestartUSec)"
E sh -c "printf '[Service]\nWatchdogSec=4s\n' > $DROPIN/60-harness-watchdog.conf"
SC daemon-reload; SC restart irqagent.service
pid=$(main_pid); r0=$(prop irqagent.service NRestarts); w0=$(prop irqagent.service WatchdogTimestampMonotonic)
sleep 10
w1=$(prop irqagent.service WatchdogTimestampMonotonic)
if [ "$(main_pid)" = "$pid" ] && [ "$(prop irqagent.service SubState)" = running ] && [ "$w1" -gt "$w0" ]; then
    pass watchdog-pings "alive 10 s under WatchdogSec=4s, last ping $(( (w1 - w0) / 1000 )) ms after the first"
else
    fail watchdog-pings "pid $pid -> $(main_pid), $(prop irqagent.service SubState), pings $w0 -> $w1"
fi
T0=$(now); E kill -STOP "$pid"
if t=$(wait_log "$T0" 20 'Watchdog timeout' -u irqagent.service) \
    && wait_log "$T0" 30 'Started ' -u irqagent.service >/dev/null \
    && [ "$(prop irqagent.service NRestarts)" = $((r0 + 1)) ] && [ "$(prop irqagent.service SubState)" = running ]; then
    t2=$(wait_log "$T0" 1 'Started ' -u irqagent.service)
    pass watchdog-fires "SIGSTOP -> '$(jsince "$T0" -u irqagent.service | grep -m1 'Watchdog timeout' | sed 's/^irqagent.service: //')' after $(secs "$T0" "$t") s; $(jsince "$T0" -u irqagent.service | grep -m1 'Main process exited' | sed 's/^irqagent.service: //'); restarted (NRestarts=$(prop irqagent.service NRestarts), pid $(main_pid)) after $(secs "$T0" "$t2") s"
else
    fail watchdog-fires "$(jsince "$T0" -u irqagent.service | tail -5 | tr '\n' '|')"
    E kill -CONT "$pid" 2>/dev/null
fi
E rm -f $DROPIN/60-harness-watchdog.conf; SC daemon-reload

# --- 4. the one-shot unit (Conflicts= stops the daemon) ----------------------------------
T0=$(now); SC start irqagent-apply.service; rc=$?; T1=$(now)
res="$(prop irqagent-apply.service Result) exit=$(prop irqagent-apply.service ExecMainStatus) $(prop irqagent-apply.service ActiveState)/$(prop irqagent-apply.service SubState)"
line=$(jsince "$T0" _SYSTEMD_UNIT=irqagent-apply.service | tail -1)
case "$res" in
    "success exit=0 active/exited"|"success exit=1 active/exited")
        pass oneshot "as shipped: rc=$rc in $(ms "$T0" "$T1") ms, $res; '$line'; daemon now $(prop irqagent.service ActiveState) (Conflicts=)" ;;
    *) fail oneshot "rc=$rc, $res; $(jsince "$T0" -u irqagent-apply.service | tail -3 | tr '\n' '|')" ;;
esac
if [ $HAVE_TREES = 1 ]; then
    E mkdir -p /etc/systemd/system/irqagent-apply.service.d
    E sh -c "printf '[Service]\nExecStart=\nExecStart=%s --root /srv/irqtree-apply --state-dir /var/lib/irqagent/tree-apply\nReadWritePaths=/srv/irqtree-apply\n' '$EXEC_APPLY' > /etc/systemd/system/irqagent-apply.service.d/50-harness-root.conf"
    SC daemon-reload; T0=$(now); SC restart irqagent-apply.service; rc=$?
    line=$(jsince "$T0" _SYSTEMD_UNIT=irqagent-apply.service | tail -1)
    if [ $rc = 0 ] && echo "$line" | grep -qE ' [1-9][0-9]* writes'; then
        pass oneshot-write "sandboxed apply on a tree: '$line', exit $(prop irqagent-apply.service ExecMainStatus)"
    else
        fail oneshot-write "rc=$rc '$line'"
    fi
    E rm -f /etc/systemd/system/irqagent-apply.service.d/50-harness-root.conf; SC daemon-reload
fi

# --- 5. switching daemon -> oneshot while the daemon is busy (Conflicts= has no order) --
ordered=no
for d in $(prop irqagent-apply.service After) $(prop irqagent-apply.service Before); do [ "$d" = irqagent.service ] && ordered=yes; done
if [ $HAVE_TREES = 1 ]; then
    SC stop irqagent-apply.service; SC reset-failed
    # the daemon on the big tree shares the shipped one-shot's state directory: the lock is what races
    E sed -i 's#/srv/irqtree#/srv/bigtree#g; s#--state-dir /var/lib/irqagent/tree #--state-dir /var/lib/irqagent #' $DROPIN/50-harness-root.conf; SC daemon-reload
    T0=$(now); SC start --no-block irqagent.service; sleep 0.5
    SC start irqagent-apply.service 2>/dev/null; rc=$?
    wait_log "$T0" 20 'Deactivated|Failed|stopping on' -u irqagent.service >/dev/null; sleep 1
    lockmsg=$(jsince "$T0" _SYSTEMD_UNIT=irqagent-apply.service | grep -m1 'holds')
    tstop=$(wait_log "$T0" 1 'stopping on SIGTERM' -u irqagent.service)
    [ -n "$tstop" ] && info stop-mid-pass "the daemon, stopped during its first pass on 2000 IRQs, logged 'stopping on SIGTERM' $(secs "$T0" "$tstop") s after its start (the pass finishes first; TimeoutStopSec=$(prop irqagent.service TimeoutStopUSec))"
    if [ $rc = 0 ] && [ $ordered = yes ]; then
        pass switch-race "apply started during the daemon's first pass waited for its stop and succeeded (ordered)"
    elif [ $rc = 0 ]; then
        fail switch-race "apply succeeded this time, but the units are not ordered (Conflicts= without After=/Before=): the stop and start jobs run in parallel"
    else
        fail switch-race "start irqagent-apply while the daemon is mid-pass: rc=$rc, Result=$(prop irqagent-apply.service Result) exit=$(prop irqagent-apply.service ExecMainStatus): '$lockmsg' (Conflicts= without After=/Before= runs the stop and start jobs in parallel; ordered: $ordered)"
    fi
    SC reset-failed
else
    [ $ordered = yes ] && pass switch-order "irqagent-apply is ordered against irqagent" || fail switch-order "Conflicts= without After=/Before= between the units"
fi

# --- 6. clean stop and shutdown ----------------------------------------------------------------
E rm -f $DROPIN/50-harness-root.conf; SC daemon-reload
SC stop irqagent.service irqagent-apply.service

# --- 7. README's monitoring setup: node_exporter's textfile collector -----------------------
# README's "Monitoring" commands, run one by one in the container as written, but for the
# apt-get install (prometheus-node-exporter is in the base rootfs; no network here)
PROM=/var/lib/prometheus/node-exporter/irqagent.prom
E cp /etc/irqagent/irqagent.toml /root/irqagent.toml.orig
MONITORING=$(awk '/^## Monitoring/ { m = 1 } m && /^```sh$/ { b = 1; next } b && /^```$/ { exit } b' "$CHECKOUT/README.md")
scrape="" ran=0
while IFS= read -r line; do
    case "$line" in
        "apt-get install "*) continue ;;
        curl*) sleep 1; scrape=$(E sh -c "$line" 2>&1) ;;
        *) E sh -c "$line" || fail monitoring "README's '$line' failed" ;;
    esac
    ran=$((ran + 1))
done <<< "$MONITORING"
mode=$(E stat -c '%a %U' "$PROM" 2>&1)
all=$(E curl -s http://127.0.0.1:9100/metrics 2>&1)
scrape_error=$(echo "$all" | grep -m1 '^node_textfile_scrape_error ')
if [ "$ran" -ge 5 ] && [ "$mode" = "644 root" ] && echo "$scrape" | grep -q '^irqagent_noncompliant_irqs 0$' \
    && [ "$scrape_error" = "node_textfile_scrape_error 0" ]; then
    pass textfile-collector "README's $ran commands: $PROM mode $mode; node_exporter at :9100 serves '$scrape' ($(echo "$all" | grep -c '^irqagent_') irqagent_ samples, '$scrape_error')"
else
    fail textfile-collector "ran $ran commands; $PROM: '$mode'; curl: '$scrape'; '${scrape_error:-no node_textfile_scrape_error}'"
fi
SC stop irqagent.service
E rm -f /etc/systemd/system/irqagent.service.d/metrics.conf; E mv /root/irqagent.toml.orig /etc/irqagent/irqagent.toml; SC daemon-reload

# --- 8. ./install.sh again (upgrade), then ./install.sh --uninstall -----------------------------
SC enable irqagent.service >/dev/null 2>&1; SC start irqagent.service
pid=$(main_pid)
# the container's namespaces but the host's network (pip reaches PyPI), as in_root does
EN() { nsenter -t "$LEADER" -m -u -i -p /usr/bin/env -i PATH=$ROOT_PATH HOME=/root LANG=C.UTF-8 \
    ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} ${NO_PROXY:+NO_PROXY=$NO_PROXY} \
    ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} ${CA:+PIP_CERT=/etc/harness-ca.crt} "$@"; }
out=$(EN sh -c 'cd /root/irqagent && ./install.sh' 2>&1 | tail -1)
if [ "$(prop irqagent.service SubState)" = running ] && [ "$(main_pid)" != "$pid" ]; then
    pass upgrade "a second ./install.sh restarted the running daemon (pid $pid -> $(main_pid)): '$out'"
else
    fail upgrade "daemon $(prop irqagent.service SubState), pid $pid -> $(main_pid): '$out'"
fi
E sh -c 'echo "{}" > /var/lib/irqagent/harness-marker'
out=$(E sh -c 'cd /root/irqagent && ./install.sh --uninstall' 2>&1)
left=$(E sh -c 'ls -d /opt/irqagent /usr/local/sbin/irqagent /usr/local/lib/systemd/system/irqagent*.service /etc/systemd/system/multi-user.target.wants/irqagent.service /etc/irqagent/irqagent.toml /var/lib/irqagent/harness-marker' 2>/dev/null | tr '\n' ' ')
if [ "$(prop irqagent.service LoadState)/$(prop irqagent.service ActiveState)" = not-found/inactive ] \
    && [ "$left" = "/etc/irqagent/irqagent.toml /var/lib/irqagent/harness-marker " ]; then
    pass uninstall "./install.sh --uninstall stopped and disabled the running daemon, removed program and units, kept config and state: '$out'"
else
    fail uninstall "irqagent.service $(prop irqagent.service LoadState)/$(prop irqagent.service ActiveState); left: $left; '$out'"
fi

# --- 9. the Debian package under systemd: install, remove, purge ------------------------------
if [ -n "$DEB" ]; then
    E rm -rf /etc/irqagent /var/lib/irqagent /root/irqagent   # as on a machine that never had irqagent
    cp "$DEB" "$ROOT/root/"
    APT="env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0"
    T0=$(now)
    E $APT install "/root/$(basename "$DEB")" > "$RUN/deb-install.log" 2>&1; rc=$?   # deps are in the base rootfs: offline
    sleep 1
    state="$(SC is-enabled irqagent.service 2>&1)/$(prop irqagent.service ActiveState)/$(prop irqagent.service SubState) $(prop irqagent.service FragmentPath) apply:$(SC is-enabled irqagent-apply.service 2>&1)"
    exec_start=$(prop irqagent.service ExecStart | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
    extra="$(E stat -c '%a' /var/lib/irqagent 2>&1) $(E dpkg-query -W -f='${Conffiles}' irqagent 2>&1 | awk '{print $1}')"
    if [ $rc = 0 ] && [ "$state" = "enabled/active/running /lib/systemd/system/irqagent.service apply:disabled" ] \
        && [ "$exec_start" = /usr/sbin/irqagent ] && [ "$extra" = "700 /etc/irqagent/irqagent.toml" ]; then
        pass deb-install "apt-get install ./$(basename "$DEB") in $(secs "$T0" "$(now)") s: irqagent.service $state, ExecStart=$exec_start; /var/lib/irqagent mode, conffile: $extra; STATUS=\"$(prop irqagent.service StatusText)\""
    else
        fail deb-install "rc=$rc; $state; ExecStart=$exec_start; $extra; $(tail -3 "$RUN/deb-install.log" | tr '\n' '|')"
    fi
    E $APT remove irqagent > "$RUN/deb-remove.log" 2>&1; rc=$?
    procs=$(E pgrep -x irqagent | tr '\n' ' ')
    kept=$(E sh -c 'ls -d /var/lib/irqagent /etc/irqagent/irqagent.toml' 2>/dev/null | tr '\n' ' ')
    if [ $rc = 0 ] && [ "$(prop irqagent.service ActiveState)" = inactive ] && [ -z "$procs" ] \
        && [ "$kept" = "/etc/irqagent/irqagent.toml /var/lib/irqagent " ]; then
        pass deb-remove "apt-get remove irqagent: irqagent.service $(prop irqagent.service LoadState)/$(prop irqagent.service ActiveState), no irqagent process; kept (until purge): $kept"
    else
        fail deb-remove "rc=$rc; irqagent.service $(prop irqagent.service ActiveState); processes: '$procs'; kept: '$kept'"
    fi
    E $APT install "/root/$(basename "$DEB")" >> "$RUN/deb-install.log" 2>&1
    SC start irqagent-apply.service   # the one-shot, started by hand: stops the daemon (Conflicts=)
    before="daemon $(prop irqagent.service ActiveState), one-shot $(prop irqagent-apply.service ActiveState)/$(prop irqagent-apply.service SubState)"
    E $APT purge irqagent > "$RUN/deb-purge.log" 2>&1; rc=$?
    left=$(E sh -c 'ls -d /var/lib/irqagent /etc/irqagent /usr/sbin/irqagent /lib/systemd/system/irqagent*.service /etc/systemd/system/*/irqagent*.service' 2>/dev/null | tr '\n' ' ')
    left="$left$(E pgrep -x irqagent | tr '\n' ' ')"
    if [ $rc = 0 ] && [ -z "$left" ] && [ "$(prop irqagent-apply.service ActiveState)" = inactive ]; then
        pass deb-purge "reinstalled, then ($before) apt-get purge irqagent: both units inactive, no state, config, program, unit or enablement left"
    else
        fail deb-purge "rc=$rc ($before); one-shot now $(prop irqagent-apply.service ActiveState); left: $left"
    fi
else
    skip deb "no .deb given (make deb; $0 CHECKOUT dist/irqagent_*.deb)"
fi

T0=$(now); kill -TERM "$NSPAWN_PID"
for _ in $(seq 1 150); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    fail shutdown "container still running 30 s after SIGTERM to systemd-nspawn"
else
    wait "$NSPAWN_PID"; rc=$?
    NSPAWN_PID=""
    [ $rc = 0 ] && pass shutdown "container halted in $(secs "$T0" "$(now)") s, systemd-nspawn exit 0" || fail shutdown "systemd-nspawn exit $rc"
fi

echo "harness: total $(secs "$T_START" "$(now)") s (run dir $RUN)"
echo "$npass passed, $nfail failed"
[ $nfail = 0 ]
