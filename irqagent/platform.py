"""The guest platform: hypervisor, kernel version, and the APIC destination width.

``decide_platform`` is pure: it weighs the CPUID answer, the kernel version, the
chips present, the APIC IDs of online CPUs and the config, and says which source
decided (SPEC: ``cpuid``, ``inferred``, ``config``, ``default``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

from irqagent import cpuid as cpuid_mod
from irqagent.config import Config
from irqagent.facts import Facts

EXT_DEST_ID_KERNEL = (5, 11)  # first kernel that uses the extended destination ID
MAX_8BIT_APIC_ID = 255


def parse_kernel_version(release: Optional[str]) -> Optional[Tuple[int, int]]:
    """``"6.1.0-18-amd64"`` -> ``(6, 1)``; None when unknown or unparsable."""
    if not release:
        return None
    match = re.match(r"^([0-9]{1,9})\.([0-9]{1,9})(?![0-9])", release)  # bounded: no 4,300-digit int()
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_hyperv_chip(chip: str) -> bool:
    return chip.startswith("HV-PCI-MSI") or "Hyper-V PCIe MSI" in chip


def is_xen_chip(chip: str) -> bool:
    return chip.startswith("xen-")


@dataclass(frozen=True)
class Platform:
    vendor: str  # kvm, xen, hyperv, none, unknown, ...
    vendor_source: str  # cpuid | inferred (from chip names) | default
    ext_dest_id: bool  # the guest uses 15-bit destinations
    source: str  # cpuid | inferred | config | default
    apic_destination: str  # 8bit | 15bit: the destination of non-remapped chips
    kernel: Optional[str]
    kernel_version: Optional[Tuple[int, int]]
    remapped: bool  # interrupt remapping chips are present
    x2apic: bool  # best guess that the guest runs in x2APIC mode
    notes: Tuple[str, ...] = ()  # why: one sentence each

    @property
    def apic_mode(self) -> str:
        return "x2apic" if self.x2apic else "xapic"


def decide_platform(facts: Facts, config: Config, chips: Iterable[str]) -> Platform:
    chips = set(chips)
    notes = []
    version = parse_kernel_version(facts.kernel)
    new_kernel = version is not None and version >= EXT_DEST_ID_KERNEL
    if version is None:
        notes.append("kernel version unknown: assuming it predates the extended destination ID (5.11)")
    max_apic = facts.topology.max_apic_id
    cmdline = facts.cmdline.split()

    if facts.cpuid is not None:
        answer = cpuid_mod.decode(facts.cpuid)
        vendor, offered = answer.vendor, answer.ext_dest_id
        notes.append(f"CPUID (cpu {facts.cpuid_cpu}): {answer.detail}")
        vendor_source = "cpuid"
    else:
        offered = False
        notes.append(f"no CPUID answer: {facts.cpuid_note}" if facts.cpuid_note else "no CPUID answer")
        if any(is_hyperv_chip(c) for c in chips):
            vendor, vendor_source = "hyperv", "inferred"
        elif any(is_xen_chip(c) for c in chips):
            vendor, vendor_source = "xen", "inferred"
        else:
            vendor, vendor_source = "unknown", "default"

    remapped = any(c.startswith("IR-") and not (vendor == "hyperv" and c == "IR-IO-APIC") for c in chips)
    x2apic = max_apic >= MAX_8BIT_APIC_ID or (facts.topology.x2apic_capable and "nox2apic" not in cmdline)

    if config.ext_dest_id is not None:
        use15, source = config.ext_dest_id, "config"
        notes.append(f"config sets reachability.ext_dest_id = {str(config.ext_dest_id).lower()}")
    elif facts.cpuid is not None:
        source = "cpuid"
        use15 = offered and new_kernel
        if offered and not new_kernel:
            notes.append(
                f"the host offers the extended destination ID but kernel {facts.kernel or '?'} "
                "predates 5.11 and cannot use it"
            )
        if not offered and max_apic > MAX_8BIT_APIC_ID and not remapped:
            notes.append(
                f"an online CPU has APIC ID {max_apic} > 255 without remapping, yet CPUID does not offer the "
                "extended destination ID: trusting CPUID (8-bit)"
            )
    elif not remapped and new_kernel and max_apic > MAX_8BIT_APIC_ID:
        use15, source = True, "inferred"
        notes.append(
            f"inferred: kernel {facts.kernel} onlined a CPU with APIC ID {max_apic} > 255 without interrupt "
            "remapping, which it only does with the extended destination ID"
        )
    else:
        use15, source = False, "default"
    return Platform(
        vendor=vendor,
        vendor_source=vendor_source,
        ext_dest_id=use15,
        source=source,
        apic_destination="15bit" if use15 else "8bit",
        kernel=facts.kernel,
        kernel_version=version,
        remapped=remapped,
        x2apic=x2apic,
        notes=tuple(notes),
    )
