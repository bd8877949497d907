"""The guest platform: hypervisor, the kernel's APIC mode, and the APIC destination width.

``decide_platform`` is pure.  It follows what the kernel itself does at boot
(``arch/x86/kernel/apic/apic.c: try_to_enable_x2apic``):

* without interrupt remapping, the kernel keeps x2APIC only when the hypervisor says
  x2APIC works without it (``x2apic_available``), and then limits APIC IDs to 255, or to
  32767 when the hypervisor offers the extended destination ID (``msi_ext_dest_id``,
  Linux 5.11+); otherwise it turns x2APIC off and xAPIC accepts APIC IDs below 255
  (``default_apic_id_valid``);
* the kernel never brings a CPU online whose APIC ID is above that limit.

So the evidence order is: the config; an online CPU with an APIC ID above 255 on a
non-remapped platform (the kernel would have refused it otherwise: ``inferred``); CPUID
(``cpuid``); the default (8-bit).
"""

from __future__ import annotations

import re

from irqagent import cpuid as cpuid_mod
from irqagent import msr as msr_mod
from irqagent.hypervisors import identify_vmm
from irqagent.records import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Literal, Mapping, Optional, Tuple

    from irqagent.config import Config
    from irqagent.cpuid import Vendor
    from irqagent.facts import Facts
    from irqagent.hypervisors import Vmm
    from irqagent.msr import ApicMode
    from irqagent.topology import FirmwareCpu

    ApicDestination = Literal["8bit", "15bit"]  # non-remapped IO-APIC/MSI: APIC IDs 0-255, or 0-32767
    Source = Literal["config", "chip", "inferred", "cpuid", "default"]  # what decided the APIC destination
    VendorSource = Literal["cpuid", "inferred", "default"]  # what told the hypervisor interface
    ModeSource = Literal["msr", "inferred"]  # what told the kernel's APIC mode

# The first kernel that uses each hypervisor's extended destination ID leaf
# (arch/x86/kernel/kvm.c kvm_msi_ext_dest_id, arch/x86/xen/enlighten_hvm.c,
# arch/x86/kernel/cpu/mshyperv.c ms_hyperv_msi_ext_dest_id: all 5.11;
# arch/x86/kernel/cpu/bhyve.c was posted in August 2025: the first release after it is 6.18).
EXT_DEST_ID_KERNEL: Mapping[Vendor, Tuple[int, int]] = {
    "kvm": (5, 11),
    "xen": (5, 11),
    "hyperv": (5, 11),
    "bhyve": (6, 18),
}
MAX_8BIT_APIC_ID = 255  # x2APIC without remapping: x2apic_set_max_apicid(255)
MAX_XAPIC_APIC_ID = 254  # xAPIC: default_apic_id_valid accepts IDs < 255
MAX_15BIT_APIC_ID = 32767  # with the extended destination ID: x2apic_set_max_apicid(32767)
FADT_FORCE_APIC_PHYSICAL = 1 << 19  # ACPI FADT flags: FORCE_APIC_PHYSICAL_DESTINATION_MODE


def parse_kernel_version(release: Optional[str]) -> Optional[Tuple[int, int]]:
    """``"6.1.0-18-amd64"`` -> ``(6, 1)``; None when unknown or unparsable."""
    if not release:
        return None
    match = re.match(r"^([0-9]{1,9})\.([0-9]{1,9})(?![0-9])", release)  # bounded: no 4,300-digit int()
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_remapping_chip(chip: str) -> bool:
    """Chips of interrupt remapping domains: ``IR-...`` (VT-d, AMD-Vi: drivers/iommu/intel/irq_remapping.c,
    drivers/iommu/amd/iommu.c); ``IR-HPET-MSI`` is remapped too but not settable."""
    return chip.startswith("IR-") and not chip.startswith("IR-HPET")


@frozen
class Platform:
    vendor: Vendor  # the CPUID interface
    vendor_source: VendorSource
    vmm: Optional[Vmm]  # the implementation
    vmm_evidence: str
    ext_dest_id: bool  # the kernel uses 15-bit destinations
    ext_dest_id_offered: Optional[bool]  # what CPUID offers; None without a CPUID answer
    source: Source  # what decided apic_destination
    apic_destination: ApicDestination  # the destination of non-remapped IO-APIC/MSI
    apic_mode: Optional[ApicMode]  # None: cannot be told
    mode_source: Optional[ModeSource]
    remapped: bool  # interrupt remapping is on (IR- chips, not the Hyper-V stub)
    hyperv_stub: bool  # Hyper-V's IOMMU stub (IR-IO-APIC without remapping)
    x2apic_cluster: bool  # non-remapped MSIs carry x2APIC cluster (logical) destinations
    kernel: Optional[str]
    broadcast_255: bool = False  # config: APIC ID 255 is the broadcast ID on this hypervisor
    notes: Tuple[str, ...] = ()  # why: one sentence each

    @property
    def limit(self) -> Optional[int]:
        """The largest APIC ID the non-remapped IO-APIC/MSI can name (SPEC ``apic.limit``)."""
        if self.apic_mode == "xapic":
            return MAX_XAPIC_APIC_ID
        if self.ext_dest_id:
            return MAX_15BIT_APIC_ID
        if self.apic_mode is None:
            return None
        return MAX_XAPIC_APIC_ID if self.broadcast_255 else MAX_8BIT_APIC_ID

    @property
    def online_limit(self) -> Optional[int]:
        """The largest APIC ID the kernel brings online; None when it has no such limit
        (x2APIC with interrupt remapping, or with Hyper-V's stub, which the kernel treats as
        remapping: drivers/iommu/hyperv-iommu.c returns IRQ_REMAP_X2APIC_MODE)."""
        if self.apic_mode == "xapic":
            return MAX_XAPIC_APIC_ID
        if self.remapped or self.hyperv_stub:
            return None
        return MAX_15BIT_APIC_ID if self.ext_dest_id else MAX_8BIT_APIC_ID


def decide_apic_mode(facts: Facts, remapped: bool) -> Tuple[Optional[ApicMode], Optional[ModeSource], str]:
    """(mode, source, note): IA32_APIC_BASE when readable, else evidence, else unknown."""
    mode = msr_mod.apic_mode(facts.apic_base)
    if mode is not None:
        return mode, "msr", f"IA32_APIC_BASE {facts.apic_base:#x}: the kernel runs {mode}"
    max_apic = facts.topology.max_apic_id
    why = facts.apic_base_note or "IA32_APIC_BASE unreadable"
    if max_apic > MAX_XAPIC_APIC_ID:
        return "x2apic", "inferred", f"x2apic: an online CPU has APIC ID {max_apic}, which xAPIC cannot name ({why})"
    cmdline = facts.cmdline.split()
    if "nox2apic" in cmdline:
        return "xapic", "inferred", f"xapic: the boot line has nox2apic ({why})"
    if not facts.topology.x2apic_capable:
        return "xapic", "inferred", f"xapic: the CPU does not offer x2APIC (no x2apic flag in cpuinfo; {why})"
    if remapped:
        return "x2apic", "inferred", f"x2apic: interrupt remapping is on and the CPU offers x2APIC ({why})"
    return None, None, f"the kernel's APIC mode cannot be told: {why} (the cpuinfo x2apic flag is the CPU's)"


def decide_platform(
    facts: Facts, config: Config, chips: Iterable[str], offline: Tuple[FirmwareCpu, ...] = ()
) -> Platform:
    """``offline``: the MADT's vCPUs that are not online (see :func:`irqagent.topology.offline_cpus`)."""
    chips = frozenset(chips)
    notes: List[str] = []
    files = facts.platform_files
    version = parse_kernel_version(facts.kernel)
    if version is None:
        notes.append("kernel version unknown")

    vendor: Vendor
    vendor_source: VendorSource
    offered: Optional[bool]
    if facts.cpuid is not None:
        answer = cpuid_mod.decode(facts.cpuid)
        vendor, vendor_source, offered = answer.vendor, "cpuid", answer.ext_dest_id
        notes.append(f"CPUID (cpu {facts.cpuid_cpu}): {answer.detail}")
    else:
        vendor, vendor_source, offered = "unknown", "default", None
        notes.append(f"no CPUID answer: {facts.cpuid_note}" if facts.cpuid_note else "no CPUID answer")
    identity = identify_vmm(
        files.dmi,
        vendor if facts.cpuid is not None else None,
        files.vmbus,
        files.acpi_tables,
        chips,
        files.madt.oem_id if files.madt is not None else None,
    )
    if vendor_source == "default" and identity.vmm is not None:
        interfaces: Dict[Vmm, Vendor] = {"hyper-v": "hyperv", "xen": "xen"}
        vendor = interfaces.get(identity.vmm, "unknown")
        vendor_source = "inferred" if vendor != "unknown" else "default"

    # Hyper-V's IOMMU stub names the IO-APIC IR-IO-APIC without remapping anything
    # (drivers/iommu/hyperv-iommu.c); it is only used when the host does not offer the
    # extended destination ID, and never beside a real DMAR/IVRS IOMMU.
    hyperv_stub = identity.vmm == "hyper-v" and "IR-IO-APIC" in chips and not files.acpi_tables
    remapping_chips = {chip for chip in chips if is_remapping_chip(chip)} - ({"IR-IO-APIC"} if hyperv_stub else set())
    remapped = bool(remapping_chips)
    mode, mode_source, mode_note = decide_apic_mode(facts, remapped)
    notes.append(mode_note)
    max_apic = facts.topology.max_apic_id
    kernel_new = version is not None and version >= EXT_DEST_ID_KERNEL.get(vendor, (5, 11))
    refused_high = [cpu.apic_id for cpu in offline if cpu.cpu is not None and cpu.apic_id > MAX_8BIT_APIC_ID]

    source: Source
    if config.ext_dest_id is not None:
        use15, source = config.ext_dest_id, "config"
        notes.append(f"config sets reachability.ext_dest_id = {str(config.ext_dest_id).lower()}")
    elif remapped or hyperv_stub:
        use15, source = False, "chip"
        notes.append(
            "interrupt remapping is on: the kernel does not use the extended destination ID "
            "(try_to_enable_x2apic), and non-remapped controllers keep 8-bit destinations"
        )
    elif max_apic > MAX_8BIT_APIC_ID:
        use15, source = True, "inferred"
        notes.append(
            f"inferred: an online CPU has APIC ID {max_apic} > 255 without interrupt remapping, which the kernel "
            "only allows with the extended destination ID"
        )
        if offered is False:
            notes.append("CPUID does not offer the extended destination ID: an interface the agent cannot decode")
        if version is not None and version < (5, 11):
            notes.append(f"kernel {facts.kernel} predates 5.11: a vendor backport of the extended destination ID")
    elif offered and refused_high:
        use15, source = False, "inferred"
        notes.append(
            f"CPUID offers the extended destination ID, but the kernel refused APIC IDs above 255 "
            f"(e.g. {refused_high[0]}): it does not use it"
        )
    elif offered and kernel_new and mode != "xapic":
        use15, source = True, "cpuid"
    elif offered is False and vendor in EXT_DEST_ID_KERNEL:
        use15, source = False, "cpuid"  # a hypervisor whose leaf the agent decodes says: not offered
    else:
        use15, source = False, "default"
        if offered and mode == "xapic":
            notes.append("CPUID offers the extended destination ID, but the kernel runs xAPIC: not used")
        elif offered and not kernel_new:
            notes.append(
                f"CPUID offers the extended destination ID, but kernel {facts.kernel or '?'} predates its support"
            )

    if mode == "xapic" and max_apic > MAX_XAPIC_APIC_ID:
        notes.append(f"inconsistent: IA32_APIC_BASE says xAPIC, yet an online CPU has APIC ID {max_apic} > 254")
    if not remapped and not hyperv_stub and max_apic > MAX_15BIT_APIC_ID:
        notes.append(f"inconsistent: an online CPU has APIC ID {max_apic} > 32767 without interrupt remapping")
    if config.ext_dest_id is False and max_apic > MAX_8BIT_APIC_ID and not (remapped or hyperv_stub):
        notes.append(f"inconsistent: the config says 8-bit, yet an online CPU has APIC ID {max_apic} > 255")

    return Platform(
        vendor=vendor,
        vendor_source=vendor_source,
        vmm=identity.vmm,
        vmm_evidence=identity.evidence,
        ext_dest_id=use15,
        ext_dest_id_offered=offered,
        source=source,
        apic_destination="15bit" if use15 else "8bit",
        apic_mode=mode,
        mode_source=mode_source,
        remapped=remapped,
        hyperv_stub=hyperv_stub,
        x2apic_cluster=_x2apic_cluster(mode, remapped, facts),
        kernel=facts.kernel,
        broadcast_255=config.apic_id_255 == "broadcast",
        notes=tuple(notes),
    )


def _x2apic_cluster(mode: Optional[ApicMode], remapped: bool, facts: Facts) -> bool:
    """Linux uses x2APIC cluster (logical) mode with remapping unless ``x2apic_phys`` is on the
    boot line or the FADT forces physical mode (arch/x86/kernel/apic/x2apic_cluster.c,
    x2apic_phys.c); without remapping it forces physical (``x2apic_phys = 1``)."""
    if mode != "x2apic" or not remapped or "x2apic_phys" in facts.cmdline.split():
        return False
    flags = facts.platform_files.fadt_flags
    return not (flags is not None and flags & FADT_FORCE_APIC_PHYSICAL)
