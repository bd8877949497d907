"""vCPUs the kernel refused: configured by the hypervisor, never brought online.

Linux never brings online a CPU whose APIC ID its non-remapped IO-APIC/MSI cannot name
(arch/x86/kernel/apic/apic.c: ``x2apic_set_max_apicid``, ``apic_id_valid``;
``default_apic_id_valid`` in xAPIC mode).  It logs ``native_cpu_up: bad cpu N``
(5.11-6.4), ``native_kick_ap: bad cpu N`` (6.5-6.8) or ``CPU N has invalid APIC ID X.
Aborting bringup`` (6.9+), and the vCPU stays present but offline.  The MADT says which
APIC IDs the hypervisor configured; the platform says the kernel's limit.  Pure.
"""

from __future__ import annotations

from irqagent import cpumask
from irqagent.platform import EXT_DEST_ID_KERNEL, MAX_8BIT_APIC_ID, MAX_15BIT_APIC_ID, MAX_XAPIC_APIC_ID
from irqagent.records import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import AbstractSet, Dict, List, Optional, Tuple

    from irqagent.hypervisors import Vmm
    from irqagent.platform import Platform
    from irqagent.topology import FirmwareCpu, Topology

QEMU_FIX = (
    "Give the guest the extended destination ID (QEMU: -machine kernel-irqchip=split, machine type pc-5.2 or "
    "newer) or a vIOMMU with interrupt remapping (-device intel-iommu,intremap=on,eim=on)"
)
# QEMU without KVM (TCG: the CPUID vendor) has no KVM CPUID leaves, hence no extended destination ID;
# its VT-d emulation remaps interrupts (the real 288-vCPU captures boot every vCPU with it).
TCG_FIX = (
    "QEMU without KVM offers no extended destination ID: give the guest a vIOMMU with interrupt remapping "
    "(-machine q35 -device intel-iommu,intremap=on,eim=on)"
)
FIXES: Dict[Vmm, str] = {
    "cloud-hypervisor": "Cloud Hypervisor offers the extended destination ID through KVM: boot a guest kernel 5.11 "
    "or newer that uses it (its IO-APIC interrupts still reach APIC IDs 0-255 only)",
    "hyper-v": "Hyper-V: boot a guest kernel 5.11 or newer on a host that offers the extended destination ID, or "
    "one built with CONFIG_HYPERV_IOMMU (the hyperv-iommu stub lets x2APIC run without interrupt remapping)",
    "xen": "Xen: a host that offers the extended destination ID (XEN_HVM_CPUID_EXT_DEST_ID, CPUID leaf base+4 EAX "
    "bit 5) and a guest kernel 5.11 or newer; Xen HVM guests have at most 128 vCPUs (APIC ID = 2 x vCPU)",
    "bhyve": "bhyve: a host that advertises the extended destination ID (FreeBSD 15.0 or newer, CPUID 0x40000001 "
    "EAX bit 0) and a guest kernel with bhyve support (arch/x86/kernel/cpu/bhyve.c, 6.18 or newer)",
}
GENERIC_FIX = (
    "Give the guest interrupt remapping (a vIOMMU with x2APIC support) or a hypervisor that offers the extended "
    "destination ID with a guest kernel 5.11 or newer, or renumber the vCPUs so that every APIC ID fits"
)
REMAPPING_FIX = (
    "APIC IDs above 32767 need interrupt remapping: give the guest a vIOMMU with x2APIC interrupt remapping "
    "(QEMU: -device intel-iommu,intremap=on,eim=on)"
)


@frozen
class RefusedCpu:
    cpu: Optional[int]  # None: the kernel never registered it
    apic_id: Optional[int]  # None: unknown (no readable MADT)
    online_capable: bool  # a hot-plug slot rather than a configured vCPU
    reason: str

    @property
    def certain(self) -> bool:
        return self.apic_id is not None


@frozen
class Refusal:
    cpus: Tuple[RefusedCpu, ...] = ()  # in CPU number order, then APIC ID order
    limit: Optional[int] = None  # the APIC ID limit that refused them
    fix: Optional[str] = None

    @property
    def refused(self) -> Tuple[RefusedCpu, ...]:
        """Configured (enabled) vCPUs the kernel refused because of their APIC IDs."""
        return tuple(entry for entry in self.cpus if entry.certain and not entry.online_capable)

    @property
    def slots(self) -> Tuple[RefusedCpu, ...]:
        """Hot-plug slots that can never come online."""
        return tuple(entry for entry in self.cpus if entry.online_capable)


def limit_reason(apic_id: int, limit: int, mode_known: bool) -> str:
    if limit == MAX_XAPIC_APIC_ID:
        return f"APIC ID {apic_id} > 254: beyond the xAPIC limit (the kernel runs xAPIC: x2APIC is off)"
    if limit == MAX_8BIT_APIC_ID:
        if apic_id == 255 and not mode_known:
            return "APIC ID 255 > 254: beyond the xAPIC limit if the kernel runs xAPIC (its APIC mode is unknown)"
        return f"APIC ID {apic_id} > 255: not addressable without the extended destination ID"
    return f"APIC ID {apic_id} > 32767: beyond the extended destination ID (15 bits)"


def decide_refusals(
    topology: Topology,
    offline: Tuple[FirmwareCpu, ...],
    madt_readable: bool,
    madt_note: str,
    platform: Platform,
    cmdline: str,
    iommu_tables: AbstractSet[str],
) -> Refusal:
    if not madt_readable:
        unknown = tuple(
            RefusedCpu(cpu, None, False, f"present but offline; the reason is unknown ({madt_note})")
            for cpu in cpumask.iter_cpus(topology.present & ~topology.online)
        )
        return Refusal(unknown)
    limit = platform.online_limit
    if limit is None:
        return Refusal()
    mode_known = platform.apic_mode is not None
    # With the kernel's mode unknown, APIC ID 255 is refused only under xAPIC: reported, with that caveat.
    threshold = MAX_XAPIC_APIC_ID if not mode_known and limit == MAX_8BIT_APIC_ID else limit
    refused: List[RefusedCpu] = []
    for entry in offline:
        if entry.apic_id <= threshold:
            continue  # offline for another reason (an operator, a failed bring-up): not refused
        reason = limit_reason(entry.apic_id, limit, mode_known)
        if entry.slot:
            reason = f"hot-plug slot that can never come online: {reason}"
        refused.append(RefusedCpu(entry.cpu, entry.apic_id, entry.slot, reason))
    refused.sort(key=lambda e: (e.cpu is None, e.cpu if e.cpu is not None else 0, e.apic_id))
    if not refused:
        return Refusal(limit=limit)
    return Refusal(tuple(refused), limit, fix_for(platform, cmdline, iommu_tables, limit))


def fix_for(platform: Platform, cmdline: str, iommu_tables: AbstractSet[str], limit: int) -> str:
    """One sentence: what would let the kernel bring these vCPUs online on this hypervisor."""
    words = cmdline.split()
    if "intremap=off" in words and iommu_tables:
        return (
            "Remove intremap=off from the kernel command line: the guest has an IOMMU "
            f"({'/'.join(sorted(iommu_tables))} table) whose interrupt remapping reaches every APIC ID"
        )
    if "nox2apic" in words:
        return "Remove nox2apic from the kernel command line: xAPIC names APIC IDs 0-254 only"
    if limit >= MAX_15BIT_APIC_ID:
        return REMAPPING_FIX
    if platform.ext_dest_id_offered:
        minimum = EXT_DEST_ID_KERNEL.get(platform.vendor, (5, 11))
        return (
            f"The hypervisor already offers the extended destination ID: boot a guest kernel "
            f"{minimum[0]}.{minimum[1]} or newer that runs x2APIC (no nox2apic) to use it"
        )
    if platform.vendor == "tcg":
        return TCG_FIX
    if platform.vmm in FIXES:
        return FIXES[platform.vmm]
    if platform.vmm == "qemu" or platform.vendor == "kvm":
        return QEMU_FIX
    return GENERIC_FIX


def group_ranges(cpus: Tuple[RefusedCpu, ...]) -> List[Tuple[Optional[int], Optional[int], int, int, RefusedCpu]]:
    """Runs of entries whose CPU numbers and APIC IDs both go up by one, with the same kind of
    reason: (first cpu, last cpu, first apic, last apic, first entry) — for the text report."""
    runs: List[Tuple[Optional[int], Optional[int], int, int, RefusedCpu]] = []
    for entry in cpus:
        if entry.apic_id is None:
            runs.append((entry.cpu, entry.cpu, -1, -1, entry))
            continue
        if runs:
            first_cpu, last_cpu, first_apic, last_apic, head = runs[-1]
            same_kind = head.online_capable == entry.online_capable and head.apic_id is not None
            next_cpu = (last_cpu is None and entry.cpu is None) or (last_cpu is not None and entry.cpu == last_cpu + 1)
            if same_kind and next_cpu and entry.apic_id == last_apic + 1 and _kind(head) == _kind(entry):
                runs[-1] = (first_cpu, entry.cpu, first_apic, entry.apic_id, head)
                continue
        runs.append((entry.cpu, entry.cpu, entry.apic_id, entry.apic_id, entry))
    return runs


def _kind(entry: RefusedCpu) -> str:
    """The reason without its numbers (``APIC ID 256 > 255: ...`` and ``APIC ID 257 > 255: ...`` are one kind)."""
    return entry.reason.rsplit(":", 1)[-1] if entry.apic_id is not None else entry.reason
