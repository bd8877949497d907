"""Named guest layouts: the fixture trees of the test suite come from here.

Each profile is a small, realistic guest that exercises one reachability case.
``tests/fixtures/regenerate.py`` writes them; a test checks they are current.
"""

from __future__ import annotations

from typing import Callable, Dict

from irqagent.devtools.gentree import IrqSpec, TreeSpec, guest_irqs

OLD = "5.4.0-100-generic"
NEW = "6.1.0-18-amd64"


def kvm_300_8bit() -> TreeSpec:
    """300 vCPUs on KVM without the extended destination ID, kernel 5.4 (onlines them all)."""
    return TreeSpec(cpus=300, kernel=OLD, hypervisor="kvm", irqs=guest_irqs(300, 12, OLD, "kvm"), cpuinfo_style="full")


def kvm_300_extdest() -> TreeSpec:
    """300 vCPUs on KVM offering the extended destination ID, kernel 6.1: 15-bit, all reachable."""
    return TreeSpec(
        cpus=300,
        kernel=NEW,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(300, 12, NEW, "kvm"),
        cpuinfo_style="minimal",
    )


def hyperv_ir() -> TreeSpec:
    """300 vCPUs on Hyper-V: IR-IO-APIC is the hyperv-iommu stub (< 255), vPCI MSI-X any CPU."""
    return TreeSpec(
        cpus=300,
        kernel="6.5.0-1025-azure",
        hypervisor="hyperv",
        irqs=guest_irqs(300, 10, "6.5.0", "hyperv"),
        cpuinfo_style="minimal",
    )


def remapped() -> TreeSpec:
    """300 vCPUs with a vIOMMU: remapped IO-APIC and MSI-X; the DMAR fault MSI stays 8-bit."""
    irqs = guest_irqs(300, 10, "6.5.0", "remapped") + (IrqSpec(60, "DMAR-MSI", "dmar0", "0-299"),)
    return TreeSpec(cpus=300, kernel="6.5.0-41-generic", hypervisor="kvm", irqs=irqs, cpuinfo_style="minimal")


def xen_evtchn() -> TreeSpec:
    """300 vCPUs on Xen: event channels reach any CPU, the per-CPU timer is not settable."""
    return TreeSpec(
        cpus=300, kernel=NEW, hypervisor="xen", irqs=guest_irqs(300, 10, NEW, "xen"), cpuinfo_style="minimal"
    )


def sparse_apic() -> TreeSpec:
    """64 vCPUs with APIC IDs 0, 8, 16, ... 504 (sparse topology), kernel 5.4, 8-bit."""
    return TreeSpec(
        cpus=64,
        apic_ids=[cpu * 8 for cpu in range(64)],
        kernel=OLD,
        hypervisor="kvm",
        irqs=guest_irqs(64, 8, OLD, "kvm"),
        cpuinfo_style="minimal",
    )


def apic_255() -> TreeSpec:
    """4 vCPUs, the last with APIC ID 255 (the 8-bit broadcast ID)."""
    return TreeSpec(
        cpus=4,
        apic_ids=[0, 1, 2, 255],
        kernel=NEW,
        hypervisor="kvm",
        irqs=guest_irqs(4, 8, NEW, "kvm"),
        cpuinfo_style="minimal",
    )


def managed() -> TreeSpec:
    """300 vCPUs, kernel 5.4, with kernel-managed queue vectors (read-only masks) on unreachable CPUs."""
    irqs = guest_irqs(300, 8, OLD, "kvm") + (
        IrqSpec(40, "PCI-MSI", "nvme0q1", "255", managed=True, device="0000:00:09.0", hwirq=1),
        IrqSpec(41, "PCI-MSI", "nvme0q2", "10", managed=True, device="0000:00:09.0", hwirq=2),
    )
    return TreeSpec(cpus=300, kernel=OLD, hypervisor="kvm", irqs=irqs, cpuinfo_style="minimal")


def old_kernel() -> TreeSpec:
    """300 vCPUs, kernel 4.14 without /sys/kernel/irq and without the cpuid device: chips from /proc/interrupts."""
    return TreeSpec(
        cpus=300,
        kernel="4.14.355",
        hypervisor="kvm",
        cpuid=False,
        sys_kernel_irq=False,
        irqs=guest_irqs(300, 8, "4.14.355", "kvm"),
        cpuinfo_style="minimal",
    )


def inferred_15bit() -> TreeSpec:
    """300 vCPUs, kernel 6.1, no cpuid device, no remapping, APIC IDs above 255 online: 15-bit is inferred."""
    return TreeSpec(
        cpus=300,
        kernel=NEW,
        hypervisor="kvm",
        ext_dest_id=True,
        cpuid=False,
        irqs=guest_irqs(300, 6, NEW, "kvm"),
        cpuinfo_style="minimal",
    )


def numa_spread() -> TreeSpec:
    """16 vCPUs on 2 NUMA nodes: a 4-queue virtio-net on node 0, a 4-queue NVMe on node 1."""
    everything = "0-15"
    irqs = [IrqSpec(irq, "IO-APIC", name, everything, hwirq=irq) for irq, name in ((1, "i8042"), (4, "ttyS0"))]
    devices = (  # (PCI slot, NUMA node, first IRQ, vector names)
        (1, 0, 24, ["virtio1-config"] + [f"virtio1-input.{q}" for q in range(4)]),
        (2, 1, 32, ["nvme0q0"] + [f"nvme0q{q}" for q in range(1, 5)]),
    )
    for slot, node, first, names in devices:
        bdf = f"0000:00:{slot:02x}.0"
        for vector, name in enumerate(names):
            irqs.append(IrqSpec(first + vector, "PCI-MSI", name, everything, device=bdf, hwirq=vector, node=node))
    return TreeSpec(
        cpus=16,
        kernel=NEW,
        hypervisor="kvm",
        irqs=tuple(irqs),
        nodes=2,
        cpuinfo_style="minimal",
        drivers={"0000:00:01.0": "virtio-pci", "0000:00:02.0": "nvme"},
    )


PROFILES: Dict[str, Callable[[], TreeSpec]] = {
    "kvm-300-8bit": kvm_300_8bit,
    "kvm-300-extdest": kvm_300_extdest,
    "hyperv-ir": hyperv_ir,
    "remapped": remapped,
    "xen-evtchn": xen_evtchn,
    "sparse-apic": sparse_apic,
    "apic-255": apic_255,
    "managed": managed,
    "old-kernel": old_kernel,
    "inferred-15bit": inferred_15bit,
    "numa-spread": numa_spread,
}
