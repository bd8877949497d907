"""Immutable facts about the guest, gathered once per run by :mod:`irqagent.kernel`.

Everything after this point (platform, controllers, plan, report) is a pure
function of these values: no stage re-reads a file.
"""

from __future__ import annotations

from irqagent.records import field, frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import FrozenSet, Literal, Mapping, Optional, Tuple

    from irqagent.cpuid import Leaves
    from irqagent.madt import Madt
    from irqagent.topology import Topology

    # Where the IRQs' chip names came from: sys/kernel/irq/N, proc/interrupts (old kernels), or nowhere
    ChipSource = Literal["sysfs", "interrupts", "none"]


@frozen
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


@frozen
class PlatformFiles:
    """Firmware and hypervisor facts that only change when CPUs are hot-plugged."""

    madt: Optional[Madt] = None  # sys/firmware/acpi/tables/APIC, parsed
    madt_note: str = "no MADT"  # why madt is None
    fadt_flags: Optional[int] = None  # sys/firmware/acpi/tables/FACP, Flags
    acpi_tables: FrozenSet[str] = frozenset()  # DMAR / IVRS present
    dmi: Mapping[str, str] = field(default_factory=dict)  # sys_vendor, product_name, bios_vendor
    vmbus: bool = False  # sys/bus/vmbus exists (Hyper-V)
    boot_id: Optional[str] = None


@frozen
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
    apic_base: Optional[int] = None  # IA32_APIC_BASE of cpuid_cpu's CPU (dev/cpu/N/msr)
    apic_base_note: str = ""  # why apic_base is None
    platform_files: PlatformFiles = field(default_factory=PlatformFiles)
    chip_source: ChipSource = "sysfs"
    default_affinity_text: Optional[str] = None
    numa_nodes: Mapping[int, int] = field(default_factory=dict)  # node -> cpumask
