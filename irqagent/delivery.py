"""Where the kernel really sends an IRQ: its effective affinity, and moves that wait.  Pure.

Writing ``smp_affinity`` does not always move an IRQ.  ``kernel/irq/manage.c:
irq_set_affinity_locked()`` programs the chip at once only when the IRQ may be moved from
process context; otherwise it sets ``IRQD_SETAFFINITY_PENDING``, copies the new mask into
``desc->pending_mask`` and ``kernel/irq/migration.c: irq_move_masked_irq()`` programs it
when the IRQ next fires.  Meanwhile ``kernel/irq/proc.c: show_irq_affinity()`` shows the
pending mask, so ``smp_affinity`` reads back what was written at once: only
``effective_affinity`` (``irq_data_get_effective_affinity_mask``, the CPU the vector is
on) tells where interrupts go.  A move whose current CPU the controller cannot reach never
completes: the interrupt that would complete it cannot be delivered.

``MOVES_AT_ONCE`` is the one table of which chips move at once.  Its source is the kernel
code above and these measurements, in Debian 6.12 guests under QEMU 10 (vCPUs with APIC
IDs 0, 1 and 256; docs/guest-lab.md), after writing ``smp_affinity_list``:

=================  ==============  ======================================================
chip               remapping       effective_affinity after the write
=================  ==============  ======================================================
``IO-APIC``        none            old CPU until the IRQ fires (ttyS0 moved, i8042 not)
``PCI-MSIX-*``     none            the same
``IR-IO-APIC``     VT-d            the new CPU at once
``IR-PCI-MSIX-*``  VT-d            the new CPU at once
``DMAR-MSI``       VT-d            the old CPU (APIC ID 256), still there 2 s later
=================  ==============  ======================================================

The remapping domains let the kernel retarget the remapping table entry from process
context (``drivers/iommu/intel/irq_remapping.c``: ``intel_ir_set_affinity``); the IOMMU's
own fault interrupt (``DMAR-MSI``, ``drivers/iommu/intel/dmar.c``) and non-remapped
IO-APIC/MSI entries are reprogrammed from the interrupt itself.
"""

from __future__ import annotations

from irqagent import cpumask
from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Literal, Mapping, Optional, Tuple

    MoveState = Literal["settled", "pending", "stuck", "unknown"]

# chip-name prefix -> True: moves when written; False: moves at the IRQ's next interrupt
MOVES_AT_ONCE = (
    ("IR-", True),  # IR-IO-APIC, IR-PCI-MSI, IR-PCI-MSIX-<bdf>, IR-HPET (remapped: retargeted in place)
    ("IO-APIC", False),
    ("PCI-MSI", False),  # PCI-MSI, PCI-MSIX-<bdf>, PCI-MSI-<bdf> without remapping
    ("DMAR-MSI", False),
)


def moves_at_once(chip: str) -> Optional[bool]:
    """True when writing the chip's affinity moves the IRQ at once, False when the move waits
    for its next interrupt, None for chips the table does not know."""
    for prefix, at_once in MOVES_AT_ONCE:
        if chip.startswith(prefix):
            return at_once
    return None


def parse_effective(text: Optional[str], nr_cpu_ids: int) -> Optional[int]:
    """The effective affinity as a mask: 0 when empty (an IRQ not started yet has no vector),
    None when the file is missing (before 4.13) or unparsable."""
    if text is None:
        return None
    try:
        return cpumask.parse_cpulist(text, nr_cpu_ids) if text else 0
    except cpumask.CpumaskError:
        return None


@frozen
class Movement:
    """Where an IRQ's vector is against its requested mask."""

    state: MoveState  # settled: on a CPU of the mask; pending: elsewhere, reachable; stuck: unreachable
    effective: int  # the CPUs the vector is on (0 when unknown)
    unreachable: int  # of those, the ones the controller cannot reach
    detail: str


UNKNOWN_DETAIL = "no readable effective_affinity_list: judged on the mask alone"


def movement(mask: int, effective: Optional[int], unreachable: int) -> Movement:
    """Judge the effective affinity ``effective`` of an IRQ whose requested mask is ``mask``;
    ``unreachable`` is the CPUs its controller cannot reach."""
    if effective is None:
        return Movement("unknown", 0, 0, UNKNOWN_DETAIL)
    cut = effective & unreachable
    if cut:
        return Movement(
            "stuck",
            effective,
            cut,
            f"the kernel still delivers it to {cpumask.cpus_phrase(cut)}, which this controller cannot reach: "
            "the move waits for an interrupt that cannot arrive",
        )
    if effective & ~mask:
        return Movement(
            "pending",
            effective,
            0,
            f"the kernel moves it from {cpumask.cpus_phrase(effective)} at its next interrupt",
        )
    return Movement("settled", effective, 0, "")


@frozen
class BootFix:
    """What to boot with so that stuck IRQs start on CPUs their controllers reach."""

    irqs: Tuple[int, ...]  # the stuck IRQs
    cpus: int  # online CPUs every one of their controllers reaches (0: none)
    present: Optional[str]  # the irqaffinity= value already on the kernel command line
    covered: bool  # that value already keeps IRQs on those CPUs

    @property
    def parameter(self) -> Optional[str]:
        return f"irqaffinity={cpumask.format_cpulist(self.cpus)}" if self.cpus else None

    @property
    def text(self) -> str:
        which = cpumask.cpus_phrase(self.cpus)
        if not self.cpus:
            return (
                "no online CPU is reachable by all of their controllers: no boot parameter can place them; "
                "give the guest interrupt remapping or the extended destination ID"
            )
        if self.covered:
            return (
                f"irqaffinity={self.present} is already on the kernel command line and keeps IRQs on {which}: "
                "these were moved after boot, and the kernel sets them up anew on the next boot"
            )
        how = (
            f"boot with {self.parameter} so that the kernel places IRQs on {which} from the start "
            f"(Debian/Ubuntu: add it to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub; "
            f"RHEL-like: grubby --update-kernel=ALL --args={self.parameter}; then reboot)"
        )
        if self.present is not None:
            how = f"replace irqaffinity={self.present} on the kernel command line: " + how
        return (
            how + "; a stuck move cannot be completed from user space, and default_smp_affinity is set too late "
            "for IRQs the kernel requests while it boots (DMAR-MSI, IRQs of built-in drivers)"
        )


def boot_fix(stuck: Mapping[int, int], cmdline: str, nr_cpu_ids: int) -> Optional[BootFix]:
    """The fix for IRQs whose move is stuck; ``stuck`` maps each to the online CPUs its
    controller reaches.  ``irqaffinity=`` (kernel/irq/irqdesc.c: ``irq_affinity_setup``) sets
    the default affinity every IRQ is set up with, before the first driver asks for one (it
    adds the boot CPU, which every controller reaches)."""
    if not stuck:
        return None
    cpus = -1
    for reachable in stuck.values():
        cpus &= reachable  # -1 & a mask >= 0 is that mask: the result is never negative
    present = None
    for token in cmdline.split():
        if token.startswith("irqaffinity="):
            present = token.split("=", 1)[1]  # each one is parsed in turn: the last one wins
    covered = False
    if present is not None:
        try:
            given = cpumask.parse_cpulist(present, nr_cpu_ids)
        except cpumask.CpumaskError:
            given = 0
        covered = bool(given) and not given & ~cpus
    return BootFix(tuple(sorted(stuck)), cpus, present, covered)
