"""Named guest layouts: the generated fixture trees of the test suite come from here.

Each profile is a guest real Linux can produce, under the hypervisor configuration its
docstring names (the README of tests/fixtures lists them).  Kernel behaviour that decides
what is online (KERNEL-NOTES in the project docs; arch/x86/kernel/apic/apic.c):

* without interrupt remapping, x2APIC stays on only when the hypervisor says it works
  without remapping (KVM, Hyper-V, Xen, bhyve with support), with APIC IDs up to 255, or
  32767 with the extended destination ID (5.11+); 5.10 and older turn x2APIC off when an
  APIC ID is above 255, and so does any kernel under QEMU TCG (no such hypervisor hook);
* xAPIC brings up APIC IDs 0-254 only; CPUs beyond the limit stay present and offline.

``tests/fixtures/regenerate.py`` writes them; a test checks they are current.
"""

from __future__ import annotations

from typing import Callable, Dict

from irqagent.devtools.gentree import IrqSpec, TreeSpec, guest_irqs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence, Tuple

K612 = "6.12.118+deb13-amd64"  # Debian 13, as in the real captures
K61 = "6.1.0-56-amd64"  # Debian 12
K510 = "5.10.0-46-amd64"  # Debian 11
QEMU_DMI = {"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)", "bios_vendor": "SeaBIOS"}


def _mask(first: int, last: int) -> int:
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


def _managed_blk(
    first_irq: int, cpus: Sequence[int], kernel: str, bdf: str = "0000:00:02.0", queues: int = 4
) -> Tuple[IrqSpec, ...]:
    """virtio-blk queue vectors: kernel-managed, spread by the kernel (0444 files from 6.12 only)."""
    read_only = kernel.startswith("6.12")
    chip = f"PCI-MSIX-{bdf}" if not kernel.startswith(("5.", "6.1.")) else "PCI-MSI"
    return tuple(
        IrqSpec(
            first_irq + q,
            chip,
            f"virtio2-req.{q}",
            str(cpus[q % len(cpus)]),
            managed=read_only,
            device=bdf,
            hwirq=q + 1,
        )
        for q in range(queues)
    )


def qemu_kvm_288_8bit() -> TreeSpec:
    """QEMU/KVM, -smp 288, in-kernel irqchip (no extended destination ID), Debian 6.12: x2APIC with
    limit 255, CPUs 256-287 refused (present, offline)."""
    return TreeSpec(
        cpus=288,
        offline=_mask(256, 287),
        kernel=K612,
        hypervisor="kvm",
        irqs=guest_irqs(288, 10, K612, "kvm") + _managed_blk(60, [0, 64, 128, 192], K612),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def qemu_kvm_288_extdest() -> TreeSpec:
    """QEMU/KVM, -smp 288, -machine q35,kernel-irqchip=split (pc-5.2+ offers kvm-msi-ext-dest-id),
    Debian 6.12: every vCPU online, 15-bit destinations (inferred from APIC IDs above 255)."""
    return TreeSpec(
        cpus=288,
        kernel=K612,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(288, 10, K612, "kvm") + _managed_blk(60, [0, 72, 144, 287], K612),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def qemu_kvm_256() -> TreeSpec:
    """QEMU/KVM, -smp 256 flat, in-kernel irqchip, Debian 6.12: APIC ID 255 is online and reachable
    (QEMU turns KVM's broadcast quirk off once an APIC ID is 255 or more): compliant."""
    return TreeSpec(
        cpus=256,
        kernel=K612,
        hypervisor="kvm",
        irqs=guest_irqs(256, 8, K612, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def qemu_vtd_288() -> TreeSpec:
    """QEMU/KVM, -smp 288, q35 with -device intel-iommu,intremap=on,eim=on (kernel-irqchip=split),
    Debian 6.12: remapped IO-APIC and MSI-X; the VT-d fault interrupt DMAR-MSI reaches APIC IDs 0-7
    only in the cluster x2APIC mode Linux uses with remapping (as on the real 288-vCPU capture)."""
    irqs = (IrqSpec(24, "DMAR-MSI", "dmar0", "0-287", hwirq=0),) + tuple(
        spec for spec in guest_irqs(288, 10, K612, "remapped") if spec.irq != 24
    )
    return TreeSpec(
        cpus=288,
        kernel=K612,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=irqs,
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
        acpi_tables=("DMAR",),
        fadt_flags=0x000084A5,  # QEMU q35: no FORCE_APIC_PHYSICAL_DESTINATION_MODE (bit 19)
    )


def qemu_intremap_off_extdest() -> TreeSpec:
    """QEMU/KVM, -smp 288, q35 with intel-iommu and kernel-irqchip=split, booted intel_iommu=on
    intremap=off, Debian 6.12: no remapping, 15-bit destinations, all online; the VT-d fault interrupt
    (physical x2APIC mode without remapping) reaches APIC IDs 0-255 only."""
    irqs = (IrqSpec(24, "DMAR-MSI", "dmar0", "0-287", hwirq=0),) + tuple(
        spec for spec in guest_irqs(288, 10, K612, "kvm") if spec.irq != 24
    )
    return TreeSpec(
        cpus=288,
        kernel=K612,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=irqs,
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
        acpi_tables=("DMAR",),
        fadt_flags=0x000084A5,
        cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro console=ttyS0 intel_iommu=on intremap=off",
    )


def cloud_hypervisor_320() -> TreeSpec:
    """Cloud Hypervisor, 320 vCPUs (KVM, extended destination ID offered), Debian 6.12: every vCPU online
    with 15-bit MSIs, but its IO-APIC ignores the extended bits: legacy IRQs must stay on APIC IDs 0-255."""
    return TreeSpec(
        cpus=320,
        kernel=K612,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(320, 12, K612, "kvm"),
        cpuinfo_style="minimal",
        madt_oem=b"CLOUDH",  # vmm/src/acpi.rs
        dmi={"sys_vendor": "Cloud Hypervisor", "product_name": "cloud-hypervisor", "bios_vendor": "cloud-hypervisor"},
    )


def hyperv_stub_nocpuid() -> TreeSpec:
    """Hyper-V without the extended destination ID, 300 vCPUs, Ubuntu 6.5 Azure kernel, no cpuid or msr
    device and no DMI: known from sys/bus/vmbus; IR-IO-APIC is the hyperv-iommu stub (the kernel keeps its
    IRQs on CPUs 0-255), vPCI MSIs reach any CPU."""
    return TreeSpec(
        cpus=300,
        kernel="6.5.0-1025-azure",
        hypervisor="hyperv",
        madt_oem=b"VRTUAL",  # Hyper-V's ACPI OEM ID
        cpuid=False,
        apic_mode=None,
        vmbus=True,
        irqs=guest_irqs(300, 10, "6.5.0", "hyperv", ioapic_affinity="0-255"),
        cpuinfo_style="minimal",
    )


def hyperv_stub_cpuid() -> TreeSpec:
    """Hyper-V whose CPUID leaf 0x40000082 has the extended-IOAPIC-RTE bit clear, 300 vCPUs, 6.5 Azure
    kernel: the hyperv-iommu stub, as without a cpuid device."""
    return TreeSpec(
        cpus=300,
        kernel="6.5.0-1025-azure",
        hypervisor="hyperv",
        madt_oem=b"VRTUAL",  # Hyper-V's ACPI OEM ID
        vmbus=True,
        irqs=guest_irqs(300, 10, "6.5.0", "hyperv", ioapic_affinity="0-255"),
        cpuinfo_style="minimal",
        dmi={
            "sys_vendor": "Microsoft Corporation",
            "product_name": "Virtual Machine",
            "bios_vendor": "Microsoft Corporation",
        },
    )


def hyperv_extdest() -> TreeSpec:
    """Hyper-V offering the extended destination ID (leaf 0x40000082 EAX bit 2), 300 vCPUs, 6.5 Azure
    kernel: no stub (hyperv_prepare_irq_remapping returns -ENODEV), a plain 15-bit IO-APIC."""
    return TreeSpec(
        cpus=300,
        kernel="6.5.0-1025-azure",
        hypervisor="hyperv",
        madt_oem=b"VRTUAL",  # Hyper-V's ACPI OEM ID
        ext_dest_id=True,
        vmbus=True,
        irqs=guest_irqs(300, 10, "6.5.0", "hyperv-ext"),
        cpuinfo_style="minimal",
        dmi={
            "sys_vendor": "Microsoft Corporation",
            "product_name": "Virtual Machine",
            "bios_vendor": "Microsoft Corporation",
        },
    )


def bhyve_288() -> TreeSpec:
    """bhyve (FreeBSD 15) advertising the extended destination ID, 288 vCPUs, a 6.18 kernel with bhyve.c:
    all online, 15-bit."""
    return TreeSpec(
        cpus=288,
        kernel="6.18.1",
        hypervisor="bhyve",
        madt_oem=b"BHYVE ",
        ext_dest_id=True,
        irqs=guest_irqs(288, 8, "6.18.1", "kvm"),
        cpuinfo_style="minimal",
        dmi={"sys_vendor": "FreeBSD", "product_name": "BHYVE", "bios_vendor": "BHYVE"},
    )


def bhyve_288_old_kernel() -> TreeSpec:
    """The same bhyve host, guest on Debian 6.12 (no bhyve support: no x2apic_available hook, so the
    kernel turns x2APIC off): xAPIC, CPUs 255-287 refused although the host offers the extended ID."""
    return TreeSpec(
        cpus=288,
        offline=_mask(255, 287),
        kernel=K612,
        hypervisor="bhyve",
        madt_oem=b"BHYVE ",
        ext_dest_id=True,
        apic_mode="xapic",
        irqs=guest_irqs(288, 8, K612, "kvm"),
        cpuinfo_style="minimal",
        dmi={"sys_vendor": "FreeBSD", "product_name": "BHYVE", "bios_vendor": "BHYVE"},
    )


def xen_hvm_128() -> TreeSpec:
    """Xen HVM, 128 vCPUs (the HVM maximum) with APIC ID = 2 x vCPU (0-254), Debian 6.1: event channels
    reach any CPU, the per-CPU timer is not settable."""
    return TreeSpec(
        cpus=128,
        apic_ids=[2 * cpu for cpu in range(128)],
        kernel=K61,
        hypervisor="xen",
        madt_oem=b"Xen\0\0\0",
        irqs=guest_irqs(128, 10, K61, "xen"),
        cpuinfo_style="minimal",
        dmi={"sys_vendor": "Xen", "product_name": "HVM domU", "bios_vendor": "Xen"},
    )


def vendor_510_384() -> TreeSpec:
    """EC2 Nitro (KVM, extended destination ID offered), 384 vCPUs, an Amazon Linux 2 5.10 kernel with
    the extended destination ID backported: 384 online, 15-bit inferred despite the version."""
    kernel = "5.10.223-212.873.amzn2.x86_64"
    return TreeSpec(
        cpus=384,
        kernel=kernel,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(384, 10, kernel, "kvm"),
        cpuinfo_style="minimal",
        madt_oem=b"AMAZON",
        dmi={"sys_vendor": "Amazon EC2", "product_name": "m7i.metal-48xl", "bios_vendor": "Amazon EC2"},
    )


def refused_612_tcg() -> TreeSpec:
    """QEMU 10 TCG, -smp 288, q35 with intel-iommu but booted intremap=off, Debian 6.12 (the real case:
    "x2apic disabled", then "CPU 255 has invalid APIC ID ff. Aborting bringup" up to 287): xAPIC,
    255 online, CPUs 255-287 refused."""
    return TreeSpec(
        cpus=288,
        offline=_mask(255, 287),
        kernel=K612,
        hypervisor="tcg",
        apic_mode="xapic",
        irqs=guest_irqs(288, 10, K612, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
        acpi_tables=("DMAR",),
        cmdline="BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro console=ttyS0 intremap=off",
    )


def refused_61_kvm() -> TreeSpec:
    """QEMU/KVM, -smp 288, in-kernel irqchip, Debian 6.1 ("native_cpu_up: bad cpu 256"...): x2APIC with
    limit 255, CPUs 256-287 refused; 6.1 names MSI-X vectors PCI-MSI, managed files are 0644."""
    return TreeSpec(
        cpus=288,
        offline=_mask(256, 287),
        kernel=K61,
        hypervisor="kvm",
        irqs=guest_irqs(288, 10, K61, "kvm") + _managed_blk(60, [0, 64, 128, 192], K61),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def refused_510_kvm() -> TreeSpec:
    """QEMU/KVM, -smp 288, in-kernel irqchip, Debian 5.10: the kernel turns x2APIC off (an APIC ID above
    255 without remapping), so xAPIC, 255 online, CPUs 255-287 refused."""
    return TreeSpec(
        cpus=288,
        offline=_mask(255, 287),
        kernel=K510,
        hypervisor="kvm",
        apic_mode="xapic",
        irqs=guest_irqs(288, 10, K510, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def refused_sparse() -> TreeSpec:
    """QEMU/KVM, -smp 8,sockets=2,cores=200 with two vCPUs in socket 1 (APIC IDs 256 and 455), in-kernel
    irqchip, Debian 6.12: only 8 vCPUs, yet 2 are refused (APIC IDs above 255)."""
    return TreeSpec(
        cpus=8,
        apic_ids=[0, 1, 2, 3, 4, 5, 256, 455],
        offline=_mask(6, 7),
        kernel=K612,
        hypervisor="kvm",
        irqs=guest_irqs(8, 8, K612, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def refused_slots() -> TreeSpec:
    """ACPI 6.3 firmware (MADT revision 5) on KVM, 200 vCPUs plus 100 Online Capable hot-plug slots with
    APIC IDs 200-299, Debian 6.12 without the extended destination ID: slots 256-299 can never come online."""
    return TreeSpec(
        cpus=200,
        possible=300,
        slots=tuple(range(200, 300)),
        madt_revision=5,
        kernel=K612,
        hypervisor="kvm",
        irqs=guest_irqs(200, 8, K612, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def kvm_300_extdest() -> TreeSpec:
    """300 vCPUs on KVM offering the extended destination ID, Debian 6.1: 15-bit, all reachable."""
    return TreeSpec(
        cpus=300,
        kernel=K61,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(300, 12, K61, "kvm"),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def inferred_15bit() -> TreeSpec:
    """300 vCPUs, Debian 6.1, no cpuid or msr device, no MADT or DMI (an unprivileged snapshot):
    APIC IDs above 255 online without remapping, so 15-bit is inferred."""
    return TreeSpec(
        cpus=300,
        kernel=K61,
        hypervisor="kvm",
        ext_dest_id=True,
        cpuid=False,
        apic_mode=None,
        madt=False,
        irqs=guest_irqs(300, 6, K61, "kvm"),
        cpuinfo_style="minimal",
    )


def managed() -> TreeSpec:
    """QEMU/KVM, 16 vCPUs, Debian 6.12: kernel-managed virtio-blk queue vectors (read-only masks)."""
    return TreeSpec(
        cpus=16,
        kernel=K612,
        hypervisor="kvm",
        irqs=guest_irqs(16, 6, K612, "kvm") + _managed_blk(40, [0, 4, 8, 12], K612),
        cpuinfo_style="minimal",
        dmi=QEMU_DMI,
    )


def old_kernel() -> TreeSpec:
    """QEMU/KVM, 64 vCPUs, kernel 4.14: no /sys/kernel/irq (chips from /proc/interrupts), no cpuid or
    msr device."""
    return TreeSpec(
        cpus=64,
        kernel="4.14.355",
        hypervisor="kvm",
        cpuid=False,
        apic_mode=None,
        sys_kernel_irq=False,
        irqs=guest_irqs(64, 8, "4.14.355", "kvm"),
        cpuinfo_style="full",
        dmi=QEMU_DMI,
    )


def numa_spread() -> TreeSpec:
    """QEMU/KVM, 16 vCPUs on 2 NUMA nodes, Debian 6.1: a 4-queue virtio-net on node 0, a 4-queue NVMe on node 1."""
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
        kernel=K61,
        hypervisor="kvm",
        irqs=tuple(irqs),
        nodes=2,
        cpuinfo_style="minimal",
        drivers={"0000:00:01.0": "virtio-pci", "0000:00:02.0": "nvme"},
        dmi=QEMU_DMI,
    )


PROFILES: Dict[str, Callable[[], TreeSpec]] = {
    "qemu-kvm-288-8bit": qemu_kvm_288_8bit,
    "qemu-kvm-288-extdest": qemu_kvm_288_extdest,
    "qemu-kvm-256": qemu_kvm_256,
    "qemu-vtd-288": qemu_vtd_288,
    "qemu-intremap-off-extdest": qemu_intremap_off_extdest,
    "cloud-hypervisor-320": cloud_hypervisor_320,
    "hyperv-stub-nocpuid": hyperv_stub_nocpuid,
    "hyperv-stub-cpuid": hyperv_stub_cpuid,
    "hyperv-extdest": hyperv_extdest,
    "bhyve-288": bhyve_288,
    "bhyve-288-old-kernel": bhyve_288_old_kernel,
    "xen-hvm-128": xen_hvm_128,
    "vendor-510-384": vendor_510_384,
    "refused-612-tcg": refused_612_tcg,
    "refused-61-kvm": refused_61_kvm,
    "refused-510-kvm": refused_510_kvm,
    "refused-sparse": refused_sparse,
    "refused-slots": refused_slots,
    "kvm-300-extdest": kvm_300_extdest,
    "inferred-15bit": inferred_15bit,
    "managed": managed,
    "old-kernel": old_kernel,
    "numa-spread": numa_spread,
}
