"""Immutable facts about the guest, gathered once per run by :mod:`irqagent.kernel`.

Everything after this point (platform, controllers, plan, report) is a pure
function of these values: no stage re-reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from irqagent.cpuid import Leaves
from irqagent.topology import Topology


@dataclass(frozen=True)
class IrqFacts:
    """One ``proc/irq/N`` directory as read."""

    irq: int
    chip: str = ""  # "" when unknown
    name: str = ""  # the actions (handler names), comma-separated
    device: Optional[str] = None  # PCI BDF
    affinity_text: Optional[str] = None  # smp_affinity_list (or smp_affinity) as read
    affinity_file: str = "smp_affinity_list"  # which file the text came from
    read_error: Optional[str] = None  # why affinity_text is missing (None: vanished)
    vanished: bool = False
    writable: bool = True  # the affinity file's mode has a write bit
    effective_text: Optional[str] = None
    node: Optional[int] = None
    driver: Optional[str] = None


@dataclass(frozen=True)
class Facts:
    """Everything the model needs, read from one root."""

    root: str
    topology: Topology
    irqs: Tuple[IrqFacts, ...]
    kernel: Optional[str] = None  # proc/sys/kernel/osrelease
    cmdline: str = ""
    cpuid: Optional[Leaves] = None  # None: no readable cpuid device or file
    cpuid_cpu: Optional[int] = None
    cpuid_note: str = ""  # why cpuid is None
    chip_source: str = "sysfs"  # sysfs | interrupts | none
    default_affinity_text: Optional[str] = None
    numa_nodes: Mapping[int, int] = field(default_factory=dict)  # node -> cpumask
