"""Interrupt controllers: chip name -> destination mode -> reachable APIC IDs -> CPUs.

A controller is one chip name as the kernel reports it (``IO-APIC``,
``PCI-MSIX-0000:00:05.0``, ``IR-PCI-MSI``...).  The platform decides the default for
every non-remapped IO-APIC/MSI (the kernel programs them all alike); a hypervisor's known
exceptions (:mod:`irqagent.hypervisors`) and the config decide the rest.  Pure functions.
"""

from __future__ import annotations

from irqagent import cpumask
from irqagent.hypervisors import exception_for
from irqagent.platform import MAX_8BIT_APIC_ID, MAX_15BIT_APIC_ID, MAX_XAPIC_APIC_ID
from irqagent.records import field, frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Literal, Mapping, Optional, Tuple, Union

    from irqagent.config import Config
    from irqagent.hypervisors import VmmException
    from irqagent.platform import ApicDestination, Platform, Source

    # Where a controller can send: the platform's APIC destination, a remapped (32-bit) or Hyper-V stub
    # destination, any CPU (event channels, Hyper-V vPCI), or nowhere settable
    Destination = Union[ApicDestination, Literal["remapped", "hyperv-ir", "any", "none"]]
    # What decided the destination: the platform's evidence, or the hypervisor exception table
    ControllerSource = Union[Source, Literal["vmm"]]

XEN_ANY = ("xen-pirq", "xen-dyn", "xen-dyn-lateeoi")  # drivers/xen/events: event channels, any CPU
NOT_SETTABLE = ("XT-PIC", "xen-percpu", "VMD-MSI")  # legacy PIC, per-CPU; VMD: drivers/pci/controller/vmd.c
PLATFORM_CHIPS = ("IO-APIC", "PCI-MSI")  # the kernel's own non-remapped IO-APIC and MSI domains (prefixes)
HYPERV_STUB_MAX = 255  # drivers/iommu/hyperv-iommu.c: ioapic_max_cpumask holds CPUs <= 255 with APIC ID < 256


@frozen
class Reach:
    """Which APIC IDs (and, for Hyper-V's stub, which CPU numbers) a controller can name."""

    max_apic_id: Optional[int] = None  # None: every APIC ID
    apic_ids: Optional[int] = None  # an explicit APIC ID mask (config), instead of max_apic_id
    max_cpu: Optional[int] = None  # also limit CPU numbers (Hyper-V's IOMMU stub)
    nothing: bool = False  # not settable

    def text(self) -> str:
        if self.nothing:
            return ""
        if self.apic_ids is not None:
            return cpumask.format_cpulist(self.apic_ids)
        return "all" if self.max_apic_id is None else f"0-{self.max_apic_id}"


@frozen
class Controller:
    chip: str
    destination: Destination
    source: ControllerSource
    reachable: int  # CPUs with a known APIC ID (online or not) the controller can deliver to
    unreachable: int  # CPUs with a known APIC ID it cannot
    online: int  # the online CPUs (to tell the usable part of reachable)
    reachable_apic_text: str  # e.g. "0-255", "all", ""
    irqs: int
    detail: str
    aliases: Tuple[Tuple[int, str], ...]  # (CPUs concerned, where their interrupts land): truncating exceptions
    platform_default: bool  # an IO-APIC/MSI chip that follows the platform mode (new device IRQs)
    # Derived once (thousands of IRQ rows share these masks: 4 KiB each at 32,768 CPUs):
    usable: int = field(init=False)  # online CPUs it can deliver to: the only CPUs a mask may be written with
    online_unreachable: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "usable", self.reachable & self.online)
        object.__setattr__(self, "online_unreachable", self.unreachable & self.online)

    @property
    def settable(self) -> bool:
        return self.destination != "none"


def eight_bit_max(platform: Platform) -> int:
    """The largest APIC ID an 8-bit destination names: 254 in xAPIC mode (default_apic_id_valid) or
    when the config says the hypervisor keeps KVM's broadcast quirk, else 255 (x2apic_set_max_apicid)."""
    return MAX_XAPIC_APIC_ID if platform.apic_mode == "xapic" or platform.broadcast_255 else MAX_8BIT_APIC_ID


def platform_reach(destination: Destination, platform: Platform) -> Reach:
    if destination == "8bit":
        return Reach(eight_bit_max(platform))
    if destination == "15bit":
        return Reach(MAX_15BIT_APIC_ID)
    if destination == "hyperv-ir":
        return Reach(HYPERV_STUB_MAX, max_cpu=HYPERV_STUB_MAX)
    if destination in ("remapped", "any"):
        return Reach()
    return Reach(nothing=True)


def _cluster_limit(row: VmmException, platform: Platform) -> Optional[int]:
    """The row's x2APIC cluster (logical) reach when it applies, else None (physical mode)."""
    return row.cluster_apic_ids if platform.x2apic_cluster else None


def exception_reach(row: VmmException, platform: Platform) -> Reach:
    cluster = _cluster_limit(row, platform)
    limit = row.physical_apic_ids if cluster is None else cluster
    return Reach(min(limit, eight_bit_max(platform)))


def classify_chip(chip: str, platform: Platform) -> Tuple[Destination, ControllerSource, str, Reach]:
    """(destination, source, detail, reach) of a chip name, before config overrides."""
    apic = platform.apic_destination
    if not chip:
        return apic, "default", "no chip name: assuming the platform's APIC destination", platform_reach(apic, platform)
    row = exception_for(platform.vmm, chip)
    if row is not None:
        reach = exception_reach(row, platform)
        mode = "physical mode" if _cluster_limit(row, platform) is None else "x2APIC cluster mode"
        return "8bit", "vmm", f"{row.reason}: APIC IDs 0-{reach.max_apic_id} in {mode} ({row.source})", reach
    destination, source, detail = _destination_of(chip, platform)
    return destination, source, detail, platform_reach(destination, platform)


def _destination_of(chip: str, platform: Platform) -> Tuple[Destination, ControllerSource, str]:
    apic = platform.apic_destination
    if chip.startswith("IR-HPET") or chip.startswith("HPET") or chip in NOT_SETTABLE:
        return "none", "chip", ""
    if chip == "IR-IO-APIC" and platform.hyperv_stub:
        return "hyperv-ir", "chip", "Hyper-V's IOMMU stub (hyperv-iommu): no remapping, CPUs 0-255 with APIC IDs 0-255"
    if chip.startswith("IR-"):
        return "remapped", "chip", ""
    if chip == "IOMMU-MSI":
        return "remapped", "chip", "the AMD IOMMU's own interrupt has a 32-bit destination (intcapxt, 5.11+)"
    if chip == "DMAR-MSI":
        return "remapped", "chip", "the VT-d unit's own interrupt has a 32-bit destination (__irq_msi_compose_msg)"
    if chip in XEN_ANY or chip.startswith("HV-PCI-MSI") or "Hyper-V PCIe MSI" in chip:
        return "any", "chip", ""
    if chip.startswith(PLATFORM_CHIPS):
        return apic, platform.source, ""
    return apic, "default", f"unknown chip {chip!r}: assuming the platform's {apic} APIC destination"


def cpus_reaching(apic_ids: Mapping[int, int], reach: Reach) -> int:
    """Mask of the CPUs (of ``apic_ids``: CPU -> APIC ID) whose APIC ID the reach names."""
    if reach.nothing:
        return 0
    if reach.apic_ids is not None:
        bits = bin(reach.apic_ids)[:1:-1]
        size = len(bits)
        chosen: Iterable[int] = (cpu for cpu, apic in apic_ids.items() if apic < size and bits[apic] == "1")
    elif reach.max_apic_id is None:
        chosen = apic_ids
    else:
        chosen = (cpu for cpu, apic in apic_ids.items() if apic <= reach.max_apic_id)
    mask = cpumask.mask_of(chosen)
    if reach.max_cpu is not None:
        mask &= (1 << (reach.max_cpu + 1)) - 1
    return mask


def build_controllers(
    chip_counts: Mapping[str, int], platform: Platform, apic_ids: Mapping[int, int], online: int, config: Config
) -> Dict[str, Controller]:
    """One Controller per chip name present; ``apic_ids``: every CPU whose APIC ID is known."""
    cache: Dict[Reach, int] = {}
    known = cpumask.mask_of(apic_ids)
    result: Dict[str, Controller] = {}
    for chip in sorted(chip_counts):
        destination, source, detail, reach = classify_chip(chip, platform)
        row = exception_for(platform.vmm, chip)
        override = config.controller_override(chip) if chip else None
        if override is not None:
            destination, source, row = override.destination, "config", None
            reach = platform_reach(destination, platform)
            if override.reachable_apic_ids is not None:
                reach = Reach(apic_ids=override.reachable_apic_ids)
            detail = f"config [[controller]] chip = {override.chip!r}"
        if reach not in cache:
            cache[reach] = cpus_reaching(apic_ids, reach)
        reachable = cache[reach]
        unreachable = 0 if reach.nothing else known & ~reachable
        aliases: Tuple[Tuple[int, str], ...] = ()
        if row is not None and row.truncates and unreachable & online:
            aliases = tuple(alias_groups(unreachable & online, apic_ids, online, platform.vmm or "the hypervisor"))
        result[chip] = Controller(
            chip=chip,
            destination=destination,
            source=source,
            reachable=reachable,
            unreachable=unreachable,
            online=online,
            reachable_apic_text=reach.text(),
            irqs=chip_counts[chip],
            detail=detail,
            aliases=aliases,
            platform_default=source != "vmm" and chip.startswith(PLATFORM_CHIPS),
        )
    return result


def alias_groups(unreachable: int, apic_ids: Mapping[int, int], online: int, who: str) -> List[Tuple[int, str]]:
    """Where a device model that keeps only destination bits 0-7 delivers interrupts aimed at
    unreachable CPUs: the online CPU whose APIC ID is ``apic & 0xFF``, or nobody.  One line per
    window of 256 APIC IDs."""
    owner = {apic: cpu for cpu, apic in apic_ids.items() if online >> cpu & 1}
    windows: Dict[int, Tuple[List[int], List[int], List[int]]] = {}
    for cpu in cpumask.iter_cpus(unreachable):
        apic = apic_ids[cpu]
        sources, targets, lost = windows.setdefault(apic >> 8, ([], [], []))
        sources.append(cpu)
        if (apic & 0xFF) in owner:
            targets.append(owner[apic & 0xFF])
        else:
            lost.append(cpu)
    lines = []
    for window in sorted(windows):
        sources, targets, lost = windows[window]
        concerned = cpumask.mask_of(sources)
        parts = []
        if targets:
            parts.append(f"delivered to {cpumask.cpus_phrase(cpumask.mask_of(targets))} instead")
        if lost:
            parts.append(f"lost for {cpumask.cpus_phrase(cpumask.mask_of(lost))} (no CPU has the low APIC ID)")
        head = f"APIC IDs {window * 256}-{window * 256 + 255} ({cpumask.cpus_phrase(concerned)}) become APIC ID & 0xff"
        lines.append((concerned, f"{head} under {who}: {'; '.join(parts)}"))
    return lines


def chip_counts(chips: Iterable[str]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for chip in chips:
        counts[chip] = counts.get(chip, 0) + 1
    return counts
