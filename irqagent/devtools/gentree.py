"""Build synthetic kernel trees (``--root`` directories) of any size.

A tree holds what irqagent reads: ``proc/cpuinfo``, ``proc/irq/N/*``,
``sys/kernel/irq/N/*`` (or ``proc/interrupts`` for old kernels),
``sys/devices/system/{cpu,node}``, PCI ``msi_irqs`` links, ``proc/cmdline``,
``proc/sys/kernel/osrelease`` and ``dev/cpu/N/cpuid`` in the text form.

Used by the tests (fixture trees), the benchmarks (up to 32,768 CPUs), and by
hand::

    python -m irqagent.devtools gen-tree /tmp/big --cpus 1024 --irqs 2048 \\
        --hypervisor kvm --ext-dest-id --kernel 6.1.0-18-amd64
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from irqagent import cpumask
from irqagent import cpuid as cpuid_mod

CPUINFO_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht "
    "syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
    "extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
    "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a "
    "misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep "
    "bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr "
    "wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm"
)


@dataclass(frozen=True)
class IrqSpec:
    irq: int
    chip: str
    name: str
    affinity: str  # cpulist
    managed: bool = False
    device: Optional[str] = None  # PCI BDF: creates sys/bus/pci/devices/BDF/msi_irqs/N
    hwirq: int = 0
    node: int = 0
    effective: Optional[str] = None


@dataclass(frozen=True)
class TreeSpec:
    cpus: int
    apic_ids: Optional[Sequence[int]] = None  # per CPU; default: APIC ID = CPU number
    offline: int = 0  # mask of offline CPUs (left out of cpuinfo)
    possible: Optional[int] = None  # nr of possible CPUs (default: cpus)
    kernel: str = "6.1.0-18-amd64"
    hypervisor: str = "kvm"  # kvm | xen | hyperv | none
    ext_dest_id: bool = False
    cpuid: bool = True  # write dev/cpu/N/cpuid (text form)
    sys_kernel_irq: bool = True  # False: old kernel, chips only in proc/interrupts
    irqs: Tuple[IrqSpec, ...] = ()
    nodes: int = 1
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro console=ttyS0"
    default_affinity: Optional[int] = None  # mask; default: all possible
    cpuinfo_style: str = "full"  # full | minimal
    drivers: Dict[str, str] = field(default_factory=dict)  # BDF -> driver name

    @property
    def nr_possible(self) -> int:
        return self.possible or self.cpus

    def apic_id(self, cpu: int) -> int:
        return self.apic_ids[cpu] if self.apic_ids is not None else cpu

    @property
    def online(self) -> int:
        return ((1 << self.cpus) - 1) & ~self.offline


def cpuid_leaves(hypervisor: str, ext_dest_id: bool) -> Dict[Tuple[int, int], cpuid_mod.Regs]:
    """The leaves a host of that kind answers (as far as irqagent looks)."""

    def sig(text: bytes) -> Tuple[int, int, int]:
        import struct

        return struct.unpack("<3I", text)

    leaves: Dict[Tuple[int, int], cpuid_mod.Regs] = {
        (1, 0): (0x00A00F11, 0x00020800, 0xFFFA3203 | (1 << 31), 0x178BFBFF)
    }
    if hypervisor == "none":
        leaves[(1, 0)] = (0x00A00F11, 0x00020800, 0x7FFA3203, 0x178BFBFF)
    elif hypervisor == "kvm":
        leaves[(0x40000000, 0)] = (0x40000001, *sig(b"KVMKVMKVM\0\0\0"))
        leaves[(0x40000001, 0)] = (0x01007EFB | (cpuid_mod.KVM_FEATURE_MSI_EXT_DEST_ID if ext_dest_id else 0), 0, 0, 0)
    elif hypervisor == "xen":
        leaves[(0x40000000, 0)] = (0x40000005, *sig(b"Microsoft Hv"))  # viridian first, as Xen does
        leaves[(0x40000100, 0)] = (0x40000105, *sig(b"XenVMMXenVMM"))
        leaves[(0x40000104, 0)] = (0x1F | (cpuid_mod.XEN_HVM_CPUID_EXT_DEST_ID if ext_dest_id else 0), 0, 0, 0)
    elif hypervisor == "hyperv":
        leaves[(0x40000000, 0)] = (0x4000000C, *sig(b"Microsoft Hv"))
        leaves[(0x40000001, 0)] = (0x31237648, 0, 0, 0)  # "Hv#1"
        if ext_dest_id:
            leaves[(cpuid_mod.HYPERV_VS_INTERFACE, 0)] = (cpuid_mod.HYPERV_VS_SIGNATURE, 0, 0, 0)
            leaves[(cpuid_mod.HYPERV_VS_PROPERTIES, 0)] = (cpuid_mod.HYPERV_VS_EXTENDED_IOAPIC_RTE, 0, 0, 0)
    else:
        raise ValueError(f"unknown hypervisor {hypervisor!r}")
    return leaves


def _write(root: str, rel: str, text: str, mode: int = 0o644) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    if mode != 0o644:
        os.chmod(path, mode)


def _cpuinfo(spec: TreeSpec) -> str:
    blocks = []
    for cpu in cpumask.iter_cpus(spec.online):
        apic = spec.apic_id(cpu)
        if spec.cpuinfo_style == "minimal":
            blocks.append(f"processor\t: {cpu}\napicid\t\t: {apic}\ninitial apicid\t: {apic}\n")
            continue
        blocks.append(
            f"processor\t: {cpu}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            f"model name\t: AMD EPYC\nstepping\t: 1\nmicrocode\t: 0x1000065\ncpu MHz\t\t: 2445.406\n"
            f"cache size\t: 512 KB\nphysical id\t: {cpu // 64}\nsiblings\t: 64\ncore id\t\t: {cpu % 64}\n"
            f"cpu cores\t: 64\napicid\t\t: {apic}\ninitial apicid\t: {apic & 0xFF}\nfpu\t\t: yes\n"
            f"fpu_exception\t: yes\ncpuid level\t: 16\nwp\t\t: yes\nflags\t\t: {CPUINFO_FLAGS}\n"
            f"bogomips\t: 4890.81\nTLB size\t: 2560 4K pages\nclflush size\t: 64\ncache_alignment\t: 64\n"
            f"address sizes\t: 48 bits physical, 48 bits virtual\npower management:\n"
        )
    return "\n".join(blocks) + "\n"


def _interrupts(spec: TreeSpec) -> str:
    online = list(cpumask.iter_cpus(spec.online))
    lines = ["    " + "".join(f"       CPU{cpu}" for cpu in online)]
    for irq in spec.irqs:
        counts = "".join(f" {0:>10}" for _ in online)
        lines.append(f"{irq.irq:>3}:{counts}  {irq.chip}-edge      {irq.name}")
    lines.append("NMI:" + "".join(f" {0:>10}" for _ in online) + "   Non-maskable interrupts")
    return "\n".join(lines) + "\n"


def write_tree(spec: TreeSpec, root: str) -> str:
    """Create the tree under ``root`` (which must not exist yet or be empty)."""
    os.makedirs(root, exist_ok=True)
    nr = spec.nr_possible
    _write(root, "proc/cpuinfo", _cpuinfo(spec))
    _write(root, "proc/sys/kernel/osrelease", spec.kernel + "\n")
    _write(root, "proc/cmdline", spec.cmdline + "\n")
    cpu_dir = "sys/devices/system/cpu"
    _write(root, f"{cpu_dir}/online", cpumask.format_cpulist(spec.online) + "\n")
    _write(root, f"{cpu_dir}/possible", f"0-{nr - 1}\n" if nr > 1 else "0\n")
    _write(root, f"{cpu_dir}/present", cpumask.format_cpulist((1 << spec.cpus) - 1) + "\n")
    default = spec.default_affinity if spec.default_affinity is not None else (1 << nr) - 1
    _write(root, "proc/irq/default_smp_affinity", cpumask.format_hexmask(default, nr) + "\n")
    per_node = -(-spec.cpus // spec.nodes)
    for node in range(spec.nodes):
        mask = ((1 << per_node) - 1) << (node * per_node) & ((1 << spec.cpus) - 1)
        _write(root, f"sys/devices/system/node/node{node}/cpulist", cpumask.format_cpulist(mask) + "\n")
    if spec.cpuid:
        first = cpumask.first(spec.online)
        text = cpuid_mod.format_text(
            cpuid_leaves(spec.hypervisor, spec.ext_dest_id), f"synthetic {spec.hypervisor} host"
        )
        _write(root, f"dev/cpu/{first}/cpuid", text)
    for irq in spec.irqs:
        base = f"proc/irq/{irq.irq}"
        mask = cpumask.parse_cpulist(irq.affinity)
        _write(root, f"{base}/smp_affinity_list", irq.affinity + "\n", 0o444 if irq.managed else 0o644)
        _write(root, f"{base}/smp_affinity", cpumask.format_hexmask(mask, nr) + "\n", 0o444 if irq.managed else 0o600)
        effective = irq.effective if irq.effective is not None else str(cpumask.first(mask & spec.online or mask))
        _write(root, f"{base}/effective_affinity_list", effective + "\n", 0o444)
        _write(root, f"{base}/node", f"{irq.node}\n", 0o444)
        if spec.sys_kernel_irq:
            sys_base = f"sys/kernel/irq/{irq.irq}"
            _write(root, f"{sys_base}/chip_name", irq.chip + "\n", 0o444)
            _write(root, f"{sys_base}/actions", irq.name + "\n", 0o444)
            _write(root, f"{sys_base}/hwirq", f"{irq.hwirq}\n", 0o444)
            _write(root, f"{sys_base}/type", "edge\n", 0o444)
        if irq.device:
            _write(root, f"sys/bus/pci/devices/{irq.device}/msi_irqs/{irq.irq}", "msix\n", 0o444)
    for bdf, driver in spec.drivers.items():
        link = os.path.join(root, f"sys/bus/pci/devices/{bdf}/driver")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(f"../../../bus/pci/drivers/{driver}", link)
    if not spec.sys_kernel_irq:
        _write(root, "proc/interrupts", _interrupts(spec))
    return root


# -- realistic IRQ layouts ---------------------------------------------------------


def _kernel_at_least(kernel: str, major: int, minor: int) -> bool:
    match = re.match(r"([0-9]+)\.([0-9]+)", kernel)
    return bool(match) and (int(match.group(1)), int(match.group(2))) >= (major, minor)


def guest_irqs(
    cpus: int,
    count: int,
    kernel: str = "6.1.0-18-amd64",
    style: str = "kvm",  # kvm | remapped | hyperv | xen
    affinity: Optional[str] = None,
    managed_every: int = 0,
    nodes: int = 1,
) -> Tuple[IrqSpec, ...]:
    """``count`` IRQs as a guest of that style has them: a few legacy IO-APIC lines,
    then multi-queue PCI devices with MSI-X vectors (virtio-net pairs)."""
    everything = affinity if affinity is not None else (f"0-{cpus - 1}" if cpus > 1 else "0")
    per_bdf_chips = _kernel_at_least(kernel, 6, 2)
    irqs: List[IrqSpec] = []
    ioapic_chip = {"kvm": "IO-APIC", "remapped": "IR-IO-APIC", "hyperv": "IR-IO-APIC", "xen": "xen-pirq"}[style]
    legacy = [(1, "i8042"), (4, "ttyS0"), (8, "rtc0"), (9, "acpi"), (12, "i8042")]
    for irq, name in legacy[: max(0, min(len(legacy), count))]:
        irqs.append(IrqSpec(irq, ioapic_chip, name, everything, hwirq=irq))
    if style == "xen" and len(irqs) < count:
        irqs.append(IrqSpec(20, "xen-percpu", "timer0", "0", hwirq=0))
    next_irq = 24
    slot = 1
    queues_per_device = 32
    while len(irqs) < count:
        bdf = f"0000:{slot // 32:02x}:{slot % 32:02x}.0"
        chip = _msi_chip(style, bdf, per_bdf_chips)
        device_node = (slot - 1) % nodes
        vectors = min(queues_per_device + 1, count - len(irqs))
        for vector in range(vectors):
            name = (
                f"virtio{slot}-config"
                if vector == 0
                else f"virtio{slot}-{'input' if vector % 2 else 'output'}.{(vector - 1) // 2}"
            )
            managed = bool(managed_every) and vector > 0 and vector % managed_every == 0
            mask = everything
            if managed:
                mask = str((vector - 1) % cpus)
            irqs.append(
                IrqSpec(
                    next_irq,
                    chip,
                    name,
                    mask,
                    managed=managed,
                    device=bdf if style != "xen" else None,
                    hwirq=vector,
                    node=device_node,
                )
            )
            next_irq += 1
        slot += 1
    return tuple(irqs[:count])


def _msi_chip(style: str, bdf: str, per_bdf: bool) -> str:
    if style == "xen":
        return "xen-dyn"
    if style == "hyperv":
        return "HV-PCI-MSIX" if per_bdf else "Hyper-V PCIe MSI"
    prefix = "IR-" if style == "remapped" else ""
    return f"{prefix}PCI-MSIX-{bdf}" if per_bdf else f"{prefix}PCI-MSI"
