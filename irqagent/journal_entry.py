"""One journal entry: an IRQ's original mask and the masks the agent may have left in it.  Pure.

The plan reads entries (to steer an IRQ back towards its original); the journal
(:mod:`irqagent.journal`) stores them.
"""

from __future__ import annotations

from irqagent import cpumask
from irqagent.records import frozen, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Optional

MAX_CPUS = 1 << 16  # masks naming a CPU at or beyond this are damaged


@frozen
class JournalEntry:
    """One IRQ's original mask and the masks the agent may have left in it."""

    irq: int
    original: str  # the text the kernel reported (cpulist, or hex for smp_affinity)
    written: Optional[str]  # what the agent last wrote and read back; None: nothing yet
    chip: str = ""
    name: str = ""
    file: str = "smp_affinity_list"
    time: float = 0.0
    pending: Optional[str] = None  # about to be written (journaled before the write)

    def same_interrupt(self, chip: str, name: str) -> bool:
        """The IRQ number still belongs to the interrupt the entry describes."""
        return self.chip == chip and self.name == name

    def mask(self, text: Optional[str]) -> Optional[int]:
        """One of the entry's texts as a mask (None when absent or unparsable)."""
        if text is None:
            return None
        try:
            return cpumask.parse_for_file(text, self.file, MAX_CPUS)
        except cpumask.CpumaskError:
            return None

    def holds_agent_mask(self, current: Optional[int]) -> bool:
        """``current`` is what the agent wrote or was writing: the IRQ is still the agent's."""
        return current is not None and current in (self.mask(self.written), self.mask(self.pending))

    def accounts_for(self, current: Optional[int]) -> bool:
        """``current`` is the original or a mask of the agent's: the entry's original still holds."""
        return current is not None and (current == self.mask(self.original) or self.holds_agent_mask(current))


def settled(entry: JournalEntry, readback_text: Optional[str]) -> Optional[JournalEntry]:
    """The entry once its pending write is over: ``readback_text`` is what the IRQ holds
    now (None: the write was refused, the IRQ holds what it held).  None: drop the entry
    (nothing of the agent's is left in the IRQ)."""
    if readback_text is not None:
        return replace(entry, written=readback_text, pending=None)
    if entry.written is None:
        return None
    return replace(entry, pending=None)
