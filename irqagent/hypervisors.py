"""Which hypervisor runs the guest, and where it delivers interrupts differently from the kernel's model.

The kernel programs every non-remapped IO-APIC and MSI the same way (8-bit, or 15-bit
with the extended destination ID), so that is the default for every controller.  Some
hypervisors' device models read fewer destination bits than the kernel writes; the
kernel cannot know, and :data:`EXCEPTIONS` is the agent's one table of those cases, each
row naming its source.  Pure functions only.
"""

from __future__ import annotations

from irqagent.records import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import AbstractSet, Dict, Literal, Mapping, Optional, Tuple

    from irqagent.cpuid import Vendor

    # The hypervisor implementations the agent tells apart (DMI, CPUID, ACPI OEM, buses)
    Vmm = Literal["qemu", "cloud-hypervisor", "ec2-nitro", "xen", "vmware", "hyper-v", "bhyve", "gce", "firecracker"]

# -- identity ------------------------------------------------------------------------

# DMI sys_vendor / product_name / bios_vendor (sys/class/dmi/id) as the hypervisors write them:
# QEMU: hw/smbios/smbios.c defaults ("QEMU"); Cloud Hypervisor: its SMBIOS tables
# ("Cloud Hypervisor"); Hyper-V: "Microsoft Corporation" / "Virtual Machine"; Xen HVM:
# "Xen" / "HVM domU"; EC2 Nitro: "Amazon EC2"; bhyve: bios_vendor "BHYVE"; VMware: "VMware, Inc.".
DMI_VENDORS: Tuple[Tuple[str, str, Vmm], ...] = (  # (field, value prefix, vmm)
    ("sys_vendor", "QEMU", "qemu"),
    ("sys_vendor", "Cloud Hypervisor", "cloud-hypervisor"),
    ("sys_vendor", "Amazon EC2", "ec2-nitro"),
    ("sys_vendor", "Xen", "xen"),
    ("sys_vendor", "VMware", "vmware"),
    ("product_name", "Virtual Machine", "hyper-v"),  # with sys_vendor Microsoft Corporation
    ("bios_vendor", "BHYVE", "bhyve"),
    ("product_name", "BHYVE", "bhyve"),
    ("product_name", "Google Compute Engine", "gce"),
    ("product_name", "Firecracker", "firecracker"),
)

# ACPI OEM ID of the MADT -> vmm: QEMU's "BOCHS " (hw/acpi/aml-build.c ACPI_BUILD_APPNAME6), Firecracker's
# "FIRECK" (src/acpi-tables; seen on this project's development machine), Cloud Hypervisor's "CLOUDH"
# (vmm/src/acpi.rs).  Weaker than DMI (firmware can be swapped), stronger than a shared CPUID signature.
ACPI_OEMS: Dict[str, Vmm] = {"BOCHS": "qemu", "FIRECK": "firecracker", "CLOUDH": "cloud-hypervisor"}

# CPUID vendor signature -> vmm, where the signature alone names the implementation.
# KVM's "KVMKVMKVM" is shared by QEMU, Cloud Hypervisor, Firecracker, crosvm...: DMI tells them apart.
CPUID_VMMS: Dict[Vendor, Vmm] = {"tcg": "qemu", "hyperv": "hyper-v", "xen": "xen", "bhyve": "bhyve", "vmware": "vmware"}


@frozen
class Identity:
    vmm: Optional[Vmm]  # None: not known
    evidence: str  # one phrase: how it was told


def identify_vmm(
    dmi: Mapping[str, str],
    cpuid_vendor: Optional[Vendor],
    vmbus: bool,
    iommu_tables: AbstractSet[str],
    chips: AbstractSet[str],
    acpi_oem: Optional[str] = None,
) -> Identity:
    """The hypervisor implementation, from DMI first (it names the VMM), then CPUID, the ACPI OEM, sysfs."""
    for field_name, prefix, vmm in DMI_VENDORS:
        value = dmi.get(field_name, "")
        if value.startswith(prefix):
            if vmm == "hyper-v" and not dmi.get("sys_vendor", "").startswith("Microsoft"):
                continue
            return Identity(vmm, f"DMI {field_name} {value!r}")
    if cpuid_vendor in CPUID_VMMS:
        return Identity(CPUID_VMMS[cpuid_vendor], f"CPUID {cpuid_vendor} signature")
    if acpi_oem in ACPI_OEMS:
        return Identity(ACPI_OEMS[acpi_oem], f"MADT OEM ID {acpi_oem!r}")
    # Hyper-V without a cpuid device: the VMBus exists and no DMAR/IVRS table describes a real IOMMU
    # (KERNEL-NOTES; drivers/iommu/hyperv-iommu.c only runs on Hyper-V).
    if vmbus and not iommu_tables:
        return Identity("hyper-v", "sys/bus/vmbus present, no DMAR/IVRS table")
    if any(chip.startswith("HV-PCI-MSI") or "Hyper-V PCIe MSI" in chip for chip in chips):
        return Identity("hyper-v", "Hyper-V vPCI MSI chips")
    if any(chip.startswith("xen-") for chip in chips):
        return Identity("xen", "Xen event channel chips")
    return Identity(None, "no DMI vendor, CPUID signature or bus that names it")


# -- the exception table ------------------------------------------------------------------


@frozen
class VmmException:
    """A controller that a hypervisor delivers narrower than the kernel's platform mode."""

    vmm: Vmm
    chip: str  # exact chip name
    source: str  # where the rule comes from
    reason: str  # the detail shown to the operator
    physical_apic_ids: int  # reachable APIC IDs 0..N in physical destination mode
    cluster_apic_ids: Optional[int] = None  # reachable APIC IDs 0..N in x2APIC cluster (logical) mode
    truncates: bool = False  # the device model delivers to APIC ID & 0xFF instead (an alias)


EXCEPTIONS: Tuple[VmmException, ...] = (
    VmmException(
        vmm="cloud-hypervisor",
        chip="IO-APIC",
        source="cloud-hypervisor devices/src/ioapic.rs: update_entry",
        reason="Cloud Hypervisor's IO-APIC builds its message from RTE bits 63-56 only (no extended destination ID)",
        physical_apic_ids=255,
        truncates=True,
    ),
    VmmException(
        vmm="qemu",
        chip="DMAR-MSI",
        source="qemu hw/i386/intel_iommu.c: vtd_generate_interrupt; linux x2apic_cluster.c, __irq_msi_compose_msg",
        reason=(
            "QEMU's emulated VT-d builds its fault interrupt from the low address register only "
            "(destination bits 0-7), while Linux puts bits 8-31 in the high word"
        ),
        physical_apic_ids=255,
        cluster_apic_ids=7,  # logical ID (apic >> 4) << 16 | 1 << (apic & 15) keeps bits 0-7 for APIC IDs 0-7 only
    ),
)


def exception_for(vmm: Optional[Vmm], chip: str) -> Optional[VmmException]:
    for row in EXCEPTIONS:
        if row.vmm == vmm and row.chip == chip:
            return row
    return None
