#!/bin/bash
# lab.sh - rebuild the "real >255-vCPU x86 guest" captures from nothing on a Debian 12 host
# (root, 2 cores, no KVM; only the Debian and PyPI registries reachable). Everything lives under ./irqagent-lab
# (or $LAB). Needs mmdebstrap, python3 (venv) and an irqagent checkout in $CHECKOUT (default: the current directory).
#
#   ./lab.sh all              setup + every scenario in $ALL (about 1 h on 2 host cores)
#   ./lab.sh setup            trixie chroot with QEMU 10 (x2APIC under TCG), 3 Debian kernels,
#                             busybox initramfs per kernel, irqagent venv
#   ./lab.sh run NAME...      boot scenario(s) (see scenario()), decode the tar, unpack the tree, audit it
#   ./lab.sh decode NAME...   redo decode + unpack + audit from captures/NAME.{log,ser1}
#   ./lab.sh audit NAME...    rerun irqagent (+ summary) on trees/NAME
#
# Outputs: captures/NAME.{cmd,log,ser1,tar,qemu.txt,result}  console log (ttyS0), tar stream (ttyS1),
#          trees/NAME/ (unpacked root tree), audits/NAME.{txt,json,json.err,summary}
# The guest also writes dev/cpu/0/msr (IA32_APIC_BASE of CPU 0, text form) and copies FACP, DMAR, DMI ids and boot_id.
# Guests run QEMU TCG (-accel tcg,thread=multi): 288 vCPUs boot in about 8-12 min. TMO caps one boot (default 900 s).
# "lpj=" is on every guest command line: without it each of the 287 APs spends seconds in
# calibrate_delay_direct() under TCG (first attempt: 27 APs in 8 min).
set -euo pipefail
L=${LAB:-$PWD/irqagent-lab}; T=$L/trixie; export LAB=$L   # LAB=/other/dir ./lab.sh ... builds elsewhere
TMO=${TMO:-900}
# exact Debian kernel packages used (linux-image-amd64 candidates of trixie-security, bookworm-security,
# bullseye-security on 2026-11-25); if the archive has moved on, pick the current ones with
#   chroot $T apt-cache show linux-image-amd64 | grep -E '^(Version|Depends)'
KERNELS="linux-image-6.12.118+deb13-amd64 linux-image-6.1.0-56-amd64 linux-image-5.10.0-46-amd64"
MODS="virtio_pci virtio_net virtio_blk cpuid msr"
mkdir -p $L/{debs,k,boot,captures,trees,audits,src}

write_src() { # the guest /init and the host-side summary script
cat > $L/src/init.sh <<'EOF_INIT'
#!/bin/busybox sh
# /init of the lab initramfs: capture interrupt state to a tar streamed (gzip+base64) on ttyS1, then try affinity writes.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
up() { cut -d' ' -f1 /proc/uptime; }
echo "=== LAB BEGIN uptime=$(up) kernel=$(uname -r)"
for m in $(cat /mod/order); do insmod /mod/$m.ko || echo "=== insmod $m failed"; done
sleep 2
echo "=== LAB MODULES uptime=$(up) online=$(cat /sys/devices/system/cpu/online) possible=$(cat /sys/devices/system/cpu/possible) present=$(cat /sys/devices/system/cpu/present)"

C=/cap; mkdir -p $C
# every file to capture; busybox cp -p --parents reads each to EOF (proc files report size 0) and keeps its mode
F="/proc/interrupts /proc/cpuinfo /proc/cmdline /proc/sys/kernel/osrelease /proc/irq/default_smp_affinity"
F="$F /sys/devices/system/cpu/online /sys/devices/system/cpu/possible /sys/devices/system/cpu/present"
for d in /proc/irq/[0-9]*; do
  for f in smp_affinity smp_affinity_list effective_affinity effective_affinity_list affinity_hint node; do
    [ -e $d/$f ] && F="$F $d/$f"
  done
done
for d in /sys/kernel/irq/[0-9]*; do
  for f in chip_name hwirq name type actions per_cpu_count; do [ -e $d/$f ] && F="$F $d/$f"; done
done
for p in /sys/bus/pci/devices/*; do
  [ -d $p/msi_irqs ] || continue
  for f in $p/msi_irqs/*; do if [ -f $f ]; then F="$F $f"; else echo "=== NOT A FILE $f"; fi; done
done
[ -e /sys/firmware/acpi/tables/APIC ] && F="$F /sys/firmware/acpi/tables/APIC"
# more platform facts when present: FADT, DMAR, DMI identity, boot id (/sys/class/dmi/id is a symlink: copied as dirs)
for f in /sys/firmware/acpi/tables/FACP /sys/firmware/acpi/tables/DMAR /sys/class/dmi/id/sys_vendor \
         /sys/class/dmi/id/product_name /sys/class/dmi/id/bios_vendor /proc/sys/kernel/random/boot_id; do
  if [ -e $f ]; then F="$F $f"; else echo "=== ABSENT $f"; fi
done
if [ -d /sys/bus/vmbus ]; then echo "=== VMBUS present: $(ls /sys/bus/vmbus | tr '\n' ' ')"; mkdir -p $C/sys/bus/vmbus
else echo "=== VMBUS absent (no /sys/bus/vmbus)"; fi
cp -p --parents $F $C/ 2>/tmp/err || echo "=== CP ERRORS: $(cat /tmp/err)"
# CPUID of CPU 0 from the cpuid device: offset (subleaf<<32)|leaf, 16 bytes = eax ebx ecx edx (little endian)
mkdir -p $C/dev/cpu/0
rd() {
  local l=$(($1)) s=$(($2)) r
  r=$(dd if=/dev/cpu/0/cpuid bs=16 count=1 iflag=skip_bytes skip=$(( (s<<32)|l )) 2>/tmp/err | hexdump -v -e '4/4 "0x%08x " "\n"')
  set -- $r
  if [ $# -eq 4 ]; then printf '0x%x 0x%x %s %s %s %s\n' $l $s $1 $2 $3 $4
  else echo "# leaf 0x$(printf %x $l) subleaf $s: read failed: $(cat /tmp/err)"; fi
}
{
  echo "# CPUID of CPU 0 read in the guest from /dev/cpu/0/cpuid (dd, 16 bytes at (subleaf<<32)|leaf)"
  echo "# LEAF SUBLEAF EAX EBX ECX EDX"
  rd 0 0; rd 1 0
  for s in 0 1 2 3; do rd 0xb $s; done
  for s in 0 1 2 3 4; do rd 0x1f $s; done
  i=0; while [ $i -le 16 ]; do rd $((0x40000000+i)) 0; i=$((i+1)); done
} > $C/dev/cpu/0/cpuid
chmod 644 $C/dev/cpu/0/cpuid
cat $C/dev/cpu/0/cpuid
# IA32_APIC_BASE (MSR 0x1b) of CPU 0 from the msr device: 8 bytes at offset 0x1b, little endian (low word first)
r=$(dd if=/dev/cpu/0/msr bs=8 count=1 iflag=skip_bytes skip=$((0x1b)) 2>/tmp/err | hexdump -v -e '2/4 "%08x " "\n"')
set -- $r
{
  echo "# MSR of CPU 0 read in the guest from /dev/cpu/0/msr (dd, 8 bytes at offset 0x1b = IA32_APIC_BASE, little endian)"
  if [ $# -eq 2 ]; then echo "0x1b 0x$2$1"; else echo "# msr 0x1b: read failed: $(cat /tmp/err)"; fi
} > $C/dev/cpu/0/msr
chmod 644 $C/dev/cpu/0/msr
cat $C/dev/cpu/0/msr
mkdir -p $C/var/log
dmesg > $C/var/log/dmesg; chmod 644 $C/var/log/dmesg
cd $C && tar cf /tmp/cap.tar . && cd /
echo "=== TAR files=$(tar tf /tmp/cap.tar | grep -vc '/$') bytes=$(wc -c < /tmp/cap.tar) sha256=$(sha256sum /tmp/cap.tar | cut -d' ' -f1) uptime=$(up)"
stty -F /dev/ttyS1 115200 raw -echo 2>/dev/null
{ echo "=== TAR BEGIN"; gzip -c /tmp/cap.tar | base64; echo "=== TAR END"; } > /dev/ttyS1
echo "=== TAR SENT uptime=$(up)"

# ---- affinity writes (after the capture) ----
LAST=$(cat /sys/devices/system/cpu/online | tr ',' '\n' | tail -1 | sed 's/.*-//')
irqs() { ls /proc/irq | grep -E '^[0-9]+$' | sort -n; }
IOA=; MSI=; MGD=; DMR=
for n in $(irqs); do
  c=$(cat /sys/kernel/irq/$n/chip_name 2>/dev/null); a=$(cat /sys/kernel/irq/$n/actions 2>/dev/null)
  case "$c" in *IO-APIC*) [ "$a" = ttyS0 ] && IOA=$n;; DMAR-MSI) [ -z "$DMR" ] && DMR=$n;; esac
  case "$a" in *input.0*) [ -z "$MSI" ] && MSI=$n;; *req.0*|*virtio*request*) [ -z "$MGD" ] && MGD=$n;; esac
done
[ -z "$IOA" ] && for n in $(irqs); do c=$(cat /sys/kernel/irq/$n/chip_name 2>/dev/null); a=$(cat /sys/kernel/irq/$n/actions 2>/dev/null)
  case "$c" in *IO-APIC*) [ -n "$a" ] && [ "$a" != timer ] && { IOA=$n; break; };; esac; done
echo "=== WRITES last_online_cpu=$LAST ioapic_irq=$IOA msi_irq=$MSI managed_irq=$MGD dmar_irq=$DMR"
show() { echo "irq $1 chip=$(cat /sys/kernel/irq/$1/chip_name) actions=$(cat /sys/kernel/irq/$1/actions) mode=$(stat -c %a /proc/irq/$1/smp_affinity) $2 aff=$(cat /proc/irq/$1/smp_affinity_list) eff=$(cat /proc/irq/$1/effective_affinity_list 2>&1)"; }
for n in $IOA $MSI $DMR $MGD; do
  show $n "initial"
  orig=$(cat /proc/irq/$n/smp_affinity_list)
  vals="0 $LAST 256 0,$LAST 255 300 $orig"; [ "$n" = "$MGD" ] && vals="0 $LAST"
  for v in $vals; do
    err=$( { echo "$v" > /proc/irq/$n/smp_affinity_list; } 2>&1 ); rc=$?
    show $n "write '$v' rc=$rc err='$err' ->"
    echo "=== (console traffic to fire ttyS0's irq) ......................................................"
    sleep 1
    show $n "  after 1s:"
  done
done
echo "=== LAB END uptime=$(up)"
sleep 2
poweroff -f
EOF_INIT
cat > $L/src/summarize.py <<'EOF_SUM'
#!/usr/bin/env python3
"""Summarize one captured tree + console log: CPUs, chips, MADT, key dmesg lines, affinity writes."""
import os, re, struct, sys, collections
L = os.environ["LAB"]
name = sys.argv[1]
tree = f"{L}/trees/{name}"
def rd(p, mode="r"):
    try:
        with open(os.path.join(tree, p), mode) as f: return f.read()
    except OSError: return None
out = []
P = out.append
res = open(f"{L}/captures/{name}.result").read().strip() if os.path.exists(f"{L}/captures/{name}.result") else "?"
P(f"# {name}: {res}")
P("qemu: " + open(f"{L}/captures/{name}.cmd").read().strip())
qerr = open(f"{L}/captures/{name}.qemu.txt").read().strip() if os.path.exists(f"{L}/captures/{name}.qemu.txt") else ""
if qerr: P("qemu stderr: " + qerr.replace("\n", " | ")[:600])
log = open(f"{L}/captures/{name}.log", "rb").read().decode("utf-8", "replace").replace("\r", "")
for m in re.finditer(r"^=== (LAB BEGIN|LAB MODULES|TAR files|LAB END).*$", log, re.M): P("console: " + m.group(0))
if rd("proc/sys/kernel/osrelease") is None:
    P("NO TREE"); print("\n".join(out)); sys.exit()
P("osrelease: " + rd("proc/sys/kernel/osrelease").strip() + "   cmdline: " + rd("proc/cmdline").strip())
for f in ("online", "possible", "present"):
    P(f"cpu {f}: " + rd(f"sys/devices/system/cpu/{f}").strip())
ap = [int(x) for x in re.findall(r"^apicid\s*:\s*(\d+)", rd("proc/cpuinfo"), re.M)]
P(f"cpuinfo: {len(ap)} CPUs, apicid min {min(ap)} max {max(ap)}, >254: {sum(1 for a in ap if a > 254)}")
# MADT
madt = rd("sys/firmware/acpi/tables/APIC", "rb")
if madt:
    cnt = collections.Counter(); x2 = []; lap = []
    off = 44
    while off + 2 <= len(madt):
        t, ln = madt[off], madt[off + 1]
        if ln < 2: break
        cnt[t] += 1
        if t == 0: lap.append((madt[off + 3], struct.unpack_from("<I", madt, off + 4)[0]))
        if t == 9: x2.append((struct.unpack_from("<I", madt, off + 4)[0], struct.unpack_from("<I", madt, off + 8)[0]))
        off += ln
    names = {0: "LAPIC", 1: "IOAPIC", 2: "ISO", 4: "LAPIC-NMI", 9: "X2APIC", 10: "X2APIC-NMI"}
    P(f"MADT {len(madt)} bytes: " + ", ".join(f"{names.get(t, t)}={c}" for t, c in sorted(cnt.items())))
    if lap: P(f"  LAPIC ids {min(a for a,_ in lap)}..{max(a for a,_ in lap)} enabled={sum(1 for _,f in lap if f & 1)}")
    if x2: P(f"  X2APIC ids {min(a for a,_ in x2)}..{max(a for a,_ in x2)} enabled={sum(1 for _,f in x2 if f & 1)}: " + " ".join(str(a) for a,_ in x2[:6]) + (" ..." if len(x2) > 6 else ""))
# chips
chips = collections.Counter()
base = os.path.join(tree, "sys/kernel/irq")
for n in os.listdir(base):
    c = rd(f"sys/kernel/irq/{n}/chip_name")
    chips[(c or "?").strip()] += 1
P("chips: " + ", ".join(f"{c} x{k}" for c, k in sorted(chips.items())))
# key dmesg
dm = rd("var/log/dmesg") or ""
pat = re.compile(r"x2apic|X2APIC|x2APIC|remapping|DMAR-IR|IRQ remapping|invalid|ignored|Ignoring|APIC ID|apicid|smp: Brought|Total of|Allowing|max_apicid|bad cpu|do_boot_cpu|failed|refus|Disabling|not support|extended|interrupt remap|intremap|CPU.*not|BIOS bug|Cannot|Switched APIC|WARNING|Call Trace", re.I)
seen = collections.OrderedDict()
bad = re.compile(r"CPU (\d+) has invalid APIC ID (\w+)")
badcpus = collections.Counter()
for line in dm.splitlines():
    s = re.sub(r"^\[\s*[\d.]+\]\s*", "", line)
    m = bad.search(s)
    if m:
        badcpus[(int(m.group(1)), m.group(2))] += 1
        if "invalid APIC ID" not in seen: seen["invalid APIC ID"] = [None, 0]
        continue
    if pat.search(s) and "calibrate" not in s and "lpj" not in s.lower():
        key = re.sub(r"\d+", "N", s)
        if key not in seen: seen[key] = [s, 0]
        seen[key][1] += 1
if badcpus:
    cpus = sorted(badcpus)
    seen["invalid APIC ID"] = [f"smpboot: CPU N has invalid APIC ID X. Aborting bringup: {sum(badcpus.values())} lines for "
                               f"{len(cpus)} CPUs ({cpus[0][0]}/0x{cpus[0][1]} .. {cpus[-1][0]}/0x{cpus[-1][1]}), "
                               f"each CPU {min(badcpus.values())}-{max(badcpus.values())}x", 1]
for k, (s, c) in list(seen.items())[:60]:
    P(f"  dmesg: {s}" + (f"   (x{c})" if c > 1 else ""))
for m in re.finditer(r"^(=== WRITES.*|irq \d+ .*)$", log, re.M): P("  " + m.group(0))
print("\n".join(out))
EOF_SUM
chmod +x $L/src/init.sh $L/src/summarize.py
}

mounts() {
  for d in dev proc sys; do mountpoint -q $T/$d || mount --bind /$d $T/$d; done
  for d in boot captures; do mkdir -p $T/lab/$d; mountpoint -q $T/lab/$d || mount --bind $L/$d $T/lab/$d; done
}
umounts() { for d in lab/captures lab/boot sys proc dev; do if mountpoint -q $T/$d; then umount $T/$d; fi; done; }

setup_chroot() {
  [ -x $T/usr/bin/qemu-system-x86_64 ] && return
  mmdebstrap --variant=apt --include=qemu-system-x86,seabios,ipxe-qemu,busybox-static,ca-certificates,kmod,cpio,xz-utils,zstd \
    trixie $T http://deb.debian.org/debian
  cat > $T/etc/apt/sources.list.d/kernels.list <<'EOF'
deb http://deb.debian.org/debian-security trixie-security main
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
EOF
  chroot $T apt-get update -q
}

get_kernels() {
  for p in $KERNELS; do
    ls $L/debs/${p}_*.deb >/dev/null 2>&1 && continue
    chroot $T sh -c "cd /tmp && apt-get download -q $p"; mv $T/tmp/${p}_*.deb $L/debs/
  done
  for d in $L/debs/*.deb; do
    n=$(basename $d | sed -E 's/linux-image-([^_]+)-amd64_.*/\1/')
    [ -d $L/k/$n ] || { mkdir -p $L/k/$n; dpkg -x $d $L/k/$n; }
  done
  (cd $L/debs && sha256sum *.deb)
}

# initramfs for kernel k/N: static busybox + /init + the modules MODS need (dependencies from modinfo,
# decompressed; modules built into the kernel are skipped) listed in load order in /mod/order
build_initrd() {
  local n=$1 kd=$L/k/$1 r=$L/k/$1.initrd mdir kver order=""
  mdir=$( (ls -d $kd/lib/modules/* $kd/usr/lib/modules/* 2>/dev/null || true) | head -1); kver=${mdir##*/}
  rm -rf $r; mkdir -p $r/{bin,mod,proc,sys,dev,tmp}
  cp $T/usr/bin/busybox $r/bin/busybox; cp $L/src/init.sh $r/init; chmod 755 $r/init
  add() {
    local m=$1 f deps d
    case " $order " in *" $m "*) return;; esac
    f=$(find $mdir/kernel -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
    if [ -z "$f" ]; then
      grep -q "/$m.ko\$" $mdir/modules.builtin || grep -q "/${m//_/-}.ko\$" $mdir/modules.builtin || echo "WARN: $m missing in $kver" >&2
      return
    fi
    case $f in *.xz) xz -dc $f > $r/mod/$m.ko;; *.zst) zstd -qdc $f > $r/mod/$m.ko;; *) cp $f $r/mod/$m.ko;; esac
    cp $r/mod/$m.ko $T/tmp/lab-modinfo.ko; deps=$(chroot $T modinfo -F depends /tmp/lab-modinfo.ko); rm -f $T/tmp/lab-modinfo.ko
    for d in ${deps//,/ }; do add $d; done
    order="$order $m"
  }
  for m in $MODS; do add $m; done
  echo $order > $r/mod/order
  (cd $r && find . | $T/usr/bin/busybox cpio -o -H newc 2>/dev/null) | gzip -9 > $L/boot/initrd-$n.gz
  cp $kd/boot/vmlinuz-* $L/boot/vmlinuz-$n
  echo "initrd-$n: modules:$order"
}

setup_venv() {
  [ -x $L/venv/bin/irqagent ] && return
  python3 -m venv $L/venv && $L/venv/bin/pip install -q "${CHECKOUT:-$PWD}"
}

setup() {
  write_src; setup_chroot; get_kernels
  for n in $(ls $L/k | grep -v initrd); do build_initrd $n; done
  setup_venv
  chroot $T qemu-system-x86_64 --version | head -1
}

# ---- scenarios: KERNEL|GUEST-APPEND|QEMU machine args ----
K612=6.12.118+deb13; K61=6.1.0-56; K510=5.10.0-46
IOMMU="-device intel-iommu,intremap=on,eim=on"
NET="-netdev user,id=n0 -device virtio-net-pci,netdev=n0 -blockdev driver=null-co,node-name=nb0 -device virtio-blk-pci,drive=nb0"
SMP288="-smp 288"
# socket 1 starts at APIC ID 256 (200 cores -> 8 core bits): CPUs 8/9 get APIC IDs 256 and 455
SPARSE="-smp 8,sockets=2,cores=200,maxcpus=400 -device qemu64-x86_64-cpu,socket-id=1,core-id=0,thread-id=0 -device qemu64-x86_64-cpu,socket-id=1,core-id=199,thread-id=0"
scenario() {
  case $1 in
    T4)          echo "$K612||-machine q35 $IOMMU -smp 4";;          # smoke test
    R1)          echo "$K612||-machine q35 $IOMMU $SMP288";;
    R2)          echo "$K612|intremap=off|-machine q35 $IOMMU $SMP288";;
    R3)          echo "$K612||-machine q35 $SPARSE";;                # no IOMMU at all
    R3-ir)       echo "$K612||-machine q35 $IOMMU $SPARSE";;         # same topology with IR
    # 5.10/6.1 mark the TSC unstable under TCG and fall back to the HPET clocksource: with 288 vCPUs
    # the guest then crawls (5.10 without tsc=reliable: soft lockups, stuck after 7 min at "pnp: PnP ACPI init")
    R4-510-R1)   echo "$K510|tsc=reliable|-machine q35 $IOMMU $SMP288";;
    R4-510-R2)   echo "$K510|tsc=reliable intremap=off|-machine q35 $IOMMU $SMP288";;
    R4-61-R1)    echo "$K61|tsc=reliable|-machine q35 $IOMMU $SMP288";;
    R4-61-R2)    echo "$K61|tsc=reliable intremap=off|-machine q35 $IOMMU $SMP288";;
    R2-noiommu)  echo "$K612||-machine q35 $SMP288";;                # 288 vCPUs, no IOMMU
    *) echo "unknown scenario $1" >&2; return 1;;
  esac
}
ALL="T4 R1 R2 R3 R3-ir R4-510-R1 R4-510-R2 R4-61-R1 R4-61-R2 R2-noiommu"

run_one() {
  local name=$1 spec k app mach rc s e
  spec=$(scenario $name); k=${spec%%|*}; spec=${spec#*|}; app=${spec%%|*}; mach=${spec#*|}
  rm -f $L/captures/$name.{log,ser1,tar,qemu.txt,result}
  mounts
  local cmd="qemu-system-x86_64 -nodefaults -display none -no-reboot -m ${MEM:-6G} -accel tcg,thread=multi -cpu qemu64,+x2apic $mach $NET -kernel /lab/boot/vmlinuz-$k -initrd /lab/boot/initrd-$k.gz -append \"console=ttyS0 panic=-1 lpj=${LPJ:-10384992}${app:+ $app}\" -serial file:/lab/captures/$name.log -serial file:/lab/captures/$name.ser1 -monitor none"
  echo "$cmd" > $L/captures/$name.cmd
  s=$(date +%s)
  set +e; eval timeout $TMO chroot $T $cmd > $L/captures/$name.qemu.txt 2>&1; rc=$?; set -e
  e=$(date +%s)
  echo "$name kernel=$k rc=$rc wall=$((e-s))s" | tee $L/captures/$name.result
  decode $name || true
  audit $name || true
}

decode() {
  local name=$1 ser=$L/captures/$1.ser1 want got
  grep -q '^=== TAR END' <(tr -d '\r' < $ser) || { echo "$name: no complete tar on ttyS1"; return 1; }
  tr -d '\r' < $ser | sed -n '/^=== TAR BEGIN/,/^=== TAR END/p' | sed '1d;$d' | base64 -d | gunzip > $L/captures/$name.tar
  want=$(tr -d '\r' < $L/captures/$name.log | sed -n 's/.*=== TAR .*sha256=\([0-9a-f]*\).*/\1/p' | tail -1)
  got=$(sha256sum $L/captures/$name.tar | cut -d' ' -f1)
  [ "$want" = "$got" ] && echo "$name: tar sha256 ok" || { echo "$name: tar sha256 MISMATCH $want != $got"; return 1; }
  rm -rf $L/trees/$name; mkdir -p $L/trees/$name
  tar -xpf $L/captures/$name.tar -C $L/trees/$name
}

audit() {
  local name=$1
  [ -d $L/trees/$name/proc ] || return 1
  set +e
  $L/venv/bin/irqagent audit --root $L/trees/$name --config /dev/null -v > $L/audits/$name.txt 2>&1; echo "rc=$?" >> $L/audits/$name.txt
  $L/venv/bin/irqagent audit --root $L/trees/$name --config /dev/null --format json > $L/audits/$name.json 2> $L/audits/$name.json.err; echo "rc=$?" >> $L/audits/$name.json.err
  python3 $L/src/summarize.py $name > $L/audits/$name.summary 2>&1
  set -e
}

case ${1:-all} in
  setup) setup;;
  run) shift; write_src; trap umounts EXIT; for n in "$@"; do run_one $n; done;;
  decode) shift; write_src; for n in "$@"; do decode $n; audit $n; done;;
  audit) shift; write_src; for n in "$@"; do audit $n; done;;
  all) setup; trap umounts EXIT; for n in $ALL; do run_one $n; done;;
  umount) umounts;;
  *) sed -n '2,20p' $0;;
esac
