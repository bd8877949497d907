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
from irqagent import msr as msr_mod
from irqagent.devtools.madtgen import qemu_madt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    from irqagent.msr import ApicMode

    Host = Literal["kvm", "tcg", "xen", "hyperv", "bhyve", "none"]  # the CPUID leaves cpuid_leaves() writes
    Style = Literal["kvm", "remapped", "hyperv", "hyperv-ext", "xen"]  # the IRQ chips guest_irqs() names
    CpuinfoStyle = Literal["full", "minimal"]  # a real guest's cpuinfo, or only processor/flags/apicid lines

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
    hypervisor: Host = "kvm"
    ext_dest_id: bool = False
    cpuid: bool = True  # write dev/cpu/N/cpuid (text form)
    sys_kernel_irq: bool = True  # False: old kernel, chips only in proc/interrupts
    irqs: Tuple[IrqSpec, ...] = ()
    nodes: int = 1
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro console=ttyS0"
    default_affinity: Optional[int] = None  # mask; default: all possible
    cpuinfo_style: CpuinfoStyle = "full"
    drivers: Dict[str, str] = field(default_factory=dict)  # BDF -> driver name
    # Firmware and the kernel's APIC state (what tells refused vCPUs and the hypervisor apart):
    madt: bool = True  # write sys/firmware/acpi/tables/APIC (QEMU's layout) for every vCPU
    slots: Tuple[int, ...] = ()  # APIC IDs of MADT hot-plug slots (disabled entries) after the vCPUs
    madt_revision: int = 3  # QEMU 10 writes 3; ACPI 6.3+ firmware 5 (Online Capable slots)
    madt_oem: bytes = b"BOCHS "  # the ACPI OEM ID of the hypervisor's tables
    apic_mode: Optional[ApicMode] = "x2apic"  # IA32_APIC_BASE in dev/cpu/N/msr (text form); None: no msr file
    dmi: Dict[str, str] = field(default_factory=dict)  # sys/class/dmi/id/<field>
    vmbus: bool = False  # sys/bus/vmbus (Hyper-V)
    acpi_tables: Tuple[str, ...] = ()  # DMAR / IVRS: written as bare headers (presence is what counts)
    fadt_flags: Optional[int] = None  # sys/firmware/acpi/tables/FACP with these Flags
    leaves: Optional[Dict[Tuple[int, int], cpuid_mod.Regs]] = None  # explicit CPUID leaves (else from hypervisor)

    @property
    def nr_possible(self) -> int:
        return self.possible or self.cpus

    def apic_id(self, cpu: int) -> int:
        return self.apic_ids[cpu] if self.apic_ids is not None else cpu

    @property
    def online(self) -> int:
        return ((1 << self.cpus) - 1) & ~self.offline


# Literal register values (from the sources named, or a real capture), never the decoder's constants.
LEAF1_HYPERVISOR = (0x00A00F11, 0x00020800, 0xFFFA3203, 0x178BFBFF)  # this project's KVM guest: ECX bit 31 set
LEAF1_BARE_METAL = (0x00A00F11, 0x00020800, 0x7FFA3203, 0x178BFBFF)  # the same without the hypervisor bit
KVM_SIGNATURE = (0x4B4D564B, 0x564B4D56, 0x0000004D)  # "KVMKVMKVM\0\0\0"
KVM_FEATURES = 0x01007EFB  # KVM leaf 0x40000001 EAX of a real KVM host (bit 15 clear)
KVM_FEATURES_EXT_DEST = 0x0100FEFB  # the same with bit 15, KVM_FEATURE_MSI_EXT_DEST_ID (kvm_para.h)
HYPERV_SIGNATURE = (0x7263694D, 0x666F736F, 0x76482074)  # "Microsoft Hv"
HYPERV_VS_INTERFACE_EAX = 0x31235356  # "VS#1": HYPERV_VS_INTERFACE_EAX_SIGNATURE (hyperv-tlfs.h)
HYPERV_VS_PROPERTIES_EXT_RTE = 0x00000004  # BIT(2): HYPERV_VS_PROPERTIES_EAX_EXTENDED_IOAPIC_RTE
XEN_SIGNATURE = (0x566E6558, 0x65584D4D, 0x4D4D566E)  # "XenVMMXenVMM"
XEN_LEAF4 = 0x0000001F  # APIC_ACCESS_VIRT, X2APIC_VIRT, IOMMU_MAPPINGS, VCPU_ID, DOMID (xen/arch-x86/cpuid.h)
XEN_LEAF4_EXT_DEST = 0x0000003F  # plus bit 5, XEN_HVM_CPUID_EXT_DEST_ID
BHYVE_SIGNATURE = (0x76796862, 0x68622065, 0x20657679)  # "bhyve bhyve "
BHYVE_FEATURES_EXT_DEST = 0x00000001  # CPUID_BHYVE_FEAT_EXT_DEST_ID, bit 0 of 0x40000001 EAX (bhyve.c)
TCG_SIGNATURE = (0x54474354, 0x43544743, 0x47435447)  # "TCGTCGTCGTCG", as the real QEMU 10 captures show


def cpuid_leaves(hypervisor: Host, ext_dest_id: bool) -> Dict[Tuple[int, int], cpuid_mod.Regs]:
    """The leaves a host of that kind answers (as far as irqagent looks), with literal values."""
    leaves: Dict[Tuple[int, int], cpuid_mod.Regs] = {(1, 0): LEAF1_HYPERVISOR}
    if hypervisor == "none":
        leaves[(1, 0)] = LEAF1_BARE_METAL
    elif hypervisor == "kvm":
        leaves[(0x40000000, 0)] = (0x40000001, *KVM_SIGNATURE)
        leaves[(0x40000001, 0)] = (KVM_FEATURES_EXT_DEST if ext_dest_id else KVM_FEATURES, 0, 0, 0)
    elif hypervisor == "tcg":
        leaves[(0x40000000, 0)] = (0x40000001, *TCG_SIGNATURE)
    elif hypervisor == "xen":
        leaves[(0x40000000, 0)] = (0x40000005, *HYPERV_SIGNATURE)  # viridian first, as Xen does
        leaves[(0x40000100, 0)] = (0x40000105, *XEN_SIGNATURE)
        leaves[(0x40000104, 0)] = (XEN_LEAF4_EXT_DEST if ext_dest_id else XEN_LEAF4, 0, 0, 0)
    elif hypervisor == "hyperv":
        leaves[(0x40000000, 0)] = (0x4000000C, *HYPERV_SIGNATURE)
        leaves[(0x40000001, 0)] = (0x31237648, 0, 0, 0)  # "Hv#1"
        leaves[(0x40000081, 0)] = (HYPERV_VS_INTERFACE_EAX, 0, 0, 0)
        leaves[(0x40000082, 0)] = (HYPERV_VS_PROPERTIES_EXT_RTE if ext_dest_id else 0, 0, 0, 0)
    elif hypervisor == "bhyve":
        leaves[(0x40000000, 0)] = (0x40000001, *BHYVE_SIGNATURE)
        leaves[(0x40000001, 0)] = (BHYVE_FEATURES_EXT_DEST if ext_dest_id else 0, 0, 0, 0)
    else:
        raise ValueError(f"unknown hypervisor {hypervisor!r}")
    return leaves


# IA32_APIC_BASE of the boot CPU: base 0xFEE00000, bit 11 enable, bit 8 BSP, bit 10 x2APIC (Intel SDM).
APIC_BASE: Dict[ApicMode, int] = {"xapic": 0xFEE00900, "x2apic": 0xFEE00D00}


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
            blocks.append(
                f"processor\t: {cpu}\nflags\t\t: fpu apic msr x2apic hypervisor\n"
                f"apicid\t\t: {apic}\ninitial apicid\t: {apic}\n"
            )
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


def _write_binary(root: str, rel: str, data: bytes, mode: int = 0o400) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _acpi_stub(signature: bytes, body: bytes = b"") -> bytes:
    """An ACPI table with a valid header (36 bytes) and checksum around ``body``."""
    length = 36 + len(body)
    table = bytearray(signature + length.to_bytes(4, "little") + b"\x01\x00BOCHS BXPC    " + bytes(12) + body)
    table[9] = (-sum(table)) & 0xFF
    return bytes(table)


def _write_firmware(spec: TreeSpec, root: str) -> None:
    tables = "sys/firmware/acpi/tables"
    if spec.madt:
        apic_ids = [spec.apic_id(cpu) for cpu in range(spec.cpus)] + list(spec.slots)
        enabled = [True] * spec.cpus + [False] * len(spec.slots)
        data = qemu_madt(apic_ids, enabled, spec.madt_revision, spec.madt_revision >= 5, spec.madt_oem)
        _write_binary(root, f"{tables}/APIC", data)
    for name in spec.acpi_tables:
        _write_binary(root, f"{tables}/{name}", _acpi_stub(name.encode("ascii")))
    if spec.fadt_flags is not None:
        body = bytes(112 - 36) + spec.fadt_flags.to_bytes(4, "little") + bytes(276 - 116)
        _write_binary(root, f"{tables}/FACP", _acpi_stub(b"FACP", body))
    for name, value in spec.dmi.items():
        _write(root, f"sys/class/dmi/id/{name}", value + "\n", 0o444)
    if spec.vmbus:  # a file inside, so that the directory survives in git
        _write(root, "sys/bus/vmbus/drivers_autoprobe", "1\n")


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
    first = cpumask.first(spec.online)
    if spec.cpuid:
        leaves = spec.leaves if spec.leaves is not None else cpuid_leaves(spec.hypervisor, spec.ext_dest_id)
        _write(root, f"dev/cpu/{first}/cpuid", cpuid_mod.format_text(leaves, f"synthetic {spec.hypervisor} host"))
    if spec.apic_mode is not None:
        text = msr_mod.format_text({msr_mod.IA32_APIC_BASE: APIC_BASE[spec.apic_mode]}, "IA32_APIC_BASE")
        _write(root, f"dev/cpu/{first}/msr", text)
    _write_firmware(spec, root)
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
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (major, minor)


def guest_irqs(
    cpus: int,
    count: int,
    kernel: str = "6.1.0-18-amd64",
    style: Style = "kvm",
    affinity: Optional[str] = None,
    managed_every: int = 0,
    nodes: int = 1,
    ioapic_affinity: Optional[str] = None,
) -> Tuple[IrqSpec, ...]:
    """``count`` IRQs as a guest of that style has them: a few legacy IO-APIC lines,
    then multi-queue PCI devices with MSI-X vectors (virtio-net pairs)."""
    everything = affinity if affinity is not None else (f"0-{cpus - 1}" if cpus > 1 else "0")
    per_bdf_chips = _kernel_at_least(kernel, 6, 2)
    irqs: List[IrqSpec] = []
    ioapic_chip = {
        "kvm": "IO-APIC",
        "remapped": "IR-IO-APIC",
        "hyperv": "IR-IO-APIC",
        "hyperv-ext": "IO-APIC",
        "xen": "xen-pirq",
    }[style]
    legacy = [(1, "i8042"), (4, "ttyS0"), (8, "rtc0"), (9, "acpi"), (12, "i8042")]
    for irq, name in legacy[: max(0, min(len(legacy), count))]:
        irqs.append(IrqSpec(irq, ioapic_chip, name, ioapic_affinity or everything, hwirq=irq))
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


def _msi_chip(style: Style, bdf: str, per_bdf: bool) -> str:
    if style == "xen":
        return "xen-dyn"
    if style.startswith("hyperv"):
        return "Hyper-V PCIe MSI"  # 5.x-6.x kernels; HV-PCI-MSIX-<bdf> only after the 2025 rework
    prefix = "IR-" if style == "remapped" else ""
    return f"{prefix}PCI-MSIX-{bdf}" if per_bdf else f"{prefix}PCI-MSI"
