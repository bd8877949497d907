"""Interrupt controllers: chip name -> destination mode -> reachable APIC IDs -> CPUs.

A controller is one chip name as the kernel reports it (``IO-APIC``,
``PCI-MSIX-0000:00:05.0``, ``IR-PCI-MSI``...).  Pure functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from irqagent import cpumask
from irqagent.config import Config
from irqagent.platform import Platform, is_hyperv_chip
from irqagent.topology import Topology

APIC_DESTINATIONS = ("8bit", "15bit")
SETTABLE_ALL = ("remapped", "any")
XEN_ANY = ("xen-pirq", "xen-dyn", "xen-dyn-lateeoi")
NOT_SETTABLE = ("XT-PIC", "xen-percpu")
MSI_PREFIXES = ("PCI-MSI", "DMAR-MSI", "IOMMU-MSI", "AMD-Vi")
DESTINATION_BITS = {"8bit": 8, "15bit": 15, "hyperv-ir": 8}


def apic_id_limit(destination: str, broadcast_255: bool) -> Optional[int]:
    """Highest reachable APIC ID of a destination mode; None: all; -1: none."""
    if destination in ("8bit", "hyperv-ir"):
        return 255 if broadcast_255 else 254
    if destination == "15bit":
        return 32767
    if destination in SETTABLE_ALL:
        return None
    return -1


def classify_chip(chip: str, platform: Platform) -> Tuple[str, str, str]:
    """(destination, source, detail) of a chip name, before config overrides."""
    apic = platform.apic_destination
    if not chip:
        return apic, "default", "no chip name: assuming the platform's APIC destination"
    if chip.startswith("IR-"):
        if chip.startswith("IR-HPET"):
            return "none", "chip", ""
        if chip == "IR-IO-APIC" and platform.vendor == "hyperv":
            return "hyperv-ir", "chip", ""
        return "remapped", "chip", ""
    if chip in NOT_SETTABLE or chip.startswith("HPET"):
        return "none", "chip", ""
    if chip in XEN_ANY or is_hyperv_chip(chip):
        return "any", "chip", ""
    if chip == "IO-APIC" or chip.startswith(MSI_PREFIXES):
        return apic, platform.source, ""
    return apic, "default", f"unknown chip {chip!r}: assuming the platform's {apic} APIC destination"


def cpus_reaching(apic_ids: Mapping[int, int], limit: Optional[int], explicit: Optional[int]) -> int:
    """Mask of online CPUs whose APIC ID is reachable (``explicit``: APIC ID mask)."""
    if explicit is not None:
        bits = bin(explicit)[:1:-1]
        size = len(bits)
        return cpumask.mask_of(cpu for cpu, apic in apic_ids.items() if apic < size and bits[apic] == "1")
    if limit is None:
        return cpumask.mask_of(apic_ids)
    return cpumask.mask_of(cpu for cpu, apic in apic_ids.items() if apic <= limit)


@dataclass(frozen=True)
class Controller:
    chip: str
    destination: str
    source: str
    reachable: int  # online CPUs the controller can deliver to
    unreachable: int  # online CPUs it cannot
    reachable_apic_text: str  # e.g. "0-254", "all", ""
    irqs: int
    detail: str = ""
    aliases: Tuple[Tuple[int, str], ...] = ()  # (CPUs concerned, alias prediction line); 8/15-bit only

    @property
    def settable(self) -> bool:
        return self.destination != "none"


def build_controllers(
    chip_counts: Mapping[str, int], platform: Platform, topology: Topology, config: Config
) -> Dict[str, Controller]:
    """One Controller per chip name present."""
    cache: Dict[Tuple[Optional[int], Optional[int]], int] = {}
    result: Dict[str, Controller] = {}
    for chip in sorted(chip_counts):
        destination, source, detail = classify_chip(chip, platform)
        override = config.controller_override(chip) if chip else None
        explicit: Optional[int] = None
        if override is not None:
            destination, source = override.destination, "config"
            explicit = override.reachable_apic_ids
            detail = f"config [[controller]] chip = {override.chip!r}"
        limit = apic_id_limit(destination, config.broadcast_apic_id_255)
        if destination == "none":
            reachable = unreachable = 0
            apic_text = ""
        else:
            key = (limit, explicit)
            if key not in cache:
                cache[key] = cpus_reaching(topology.apic_ids, limit, explicit)
            reachable = cache[key]
            unreachable = topology.online & ~reachable
            if explicit is not None:
                apic_text = cpumask.format_cpulist(explicit)
            else:
                apic_text = "all" if limit is None else f"0-{limit}"
        aliases: Tuple[str, ...] = ()
        if unreachable and destination in APIC_DESTINATIONS and explicit is None:
            aliases = tuple(alias_groups(unreachable, topology, DESTINATION_BITS[destination]))
        result[chip] = Controller(
            chip=chip,
            destination=destination,
            source=source,
            reachable=reachable,
            unreachable=unreachable,
            reachable_apic_text=apic_text,
            irqs=chip_counts[chip],
            detail=detail,
            aliases=aliases,
        )
    return result


def alias_groups(unreachable: int, topology: Topology, bits: int) -> List[Tuple[int, str]]:
    """Where interrupts aimed at unreachable CPUs land if the APIC ID is truncated.

    Old kernels (< 5.11) truncate the destination to its low ``bits``; one line per
    window of 2**bits APIC IDs, saying which CPUs receive the aliased interrupts,
    which are lost, and which become broadcasts.
    """
    width = 1 << bits
    broadcast = width - 1 if bits == 8 else None
    by_apic = topology.cpu_of_apic_id()
    windows: Dict[int, Tuple[List[int], List[int], List[int], List[int]]] = {}
    for cpu in cpumask.iter_cpus(unreachable):
        apic = topology.apic_ids[cpu]
        low = apic & (width - 1)
        sources, targets, lost, broadcasts = windows.setdefault(apic >> bits, ([], [], [], []))
        sources.append(cpu)
        if low == broadcast:
            broadcasts.append(cpu)
        elif low in by_apic:
            targets.append(by_apic[low])
        else:
            lost.append(cpu)
    lines = []
    for window in sorted(windows):
        sources, targets, lost, broadcasts = windows[window]
        low_id, high_id = window * width, (window + 1) * width - 1
        parts = [
            f"APIC IDs {low_id}-{high_id} ({cpumask.cpus_phrase(cpumask.mask_of(sources))}) truncate to {bits} bits:"
        ]
        if targets:
            parts.append(f"delivered to {cpumask.cpus_phrase(cpumask.mask_of(targets))}")
        if lost:
            parts.append(f"lost for {cpumask.cpus_phrase(cpumask.mask_of(lost))} (no CPU owns the low ID)")
        if broadcasts:
            parts.append(f"broadcast for {cpumask.cpus_phrase(cpumask.mask_of(broadcasts))} (low ID 255)")
        if window == 0 and broadcasts and not targets and not lost:
            who = cpumask.cpus_phrase(cpumask.mask_of(broadcasts))
            parts = [f"APIC ID 255 ({who}) is the 8-bit broadcast ID: sent to every CPU"]
        lines.append((cpumask.mask_of(sources), parts[0] + (" " + "; ".join(parts[1:]) if len(parts) > 1 else "")))
    return lines


def chip_counts(chips: Iterable[str]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for chip in chips:
        counts[chip] = counts.get(chip, 0) + 1
    return counts
