"""``irqagent restore``: put the journaled originals back.

An IRQ is restored when it still holds what the agent wrote (``--force``: in any
case) and still belongs to the same interrupt (chip and handler names).  Restored
and already-original entries leave the journal; the others stay, so a later
``restore --force`` can still undo them.  The journal is saved even when the run
stops half-way, so it always names exactly the IRQs still to restore.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from irqagent import cpumask
from irqagent.execute import FATAL_ERRNOS, Execution, FatalWriteError, errno_name, write_and_verify
from irqagent.facts import Facts, IrqFacts
from irqagent.journal import Journal, JournalEntry, JournalStore
from irqagent.kernel import DEFAULT_AFFINITY, KernelTree, describe_oserror
from irqagent.plan import DefaultAffinityRow, IrqRow


@dataclass
class Restoration(Execution):
    not_restored: int = 0  # journaled items left as they are (exit status 1)


def restore(
    facts: Facts, rows: List[IrqRow], tree: KernelTree, store: JournalStore, journal: Journal, force: bool
) -> Restoration:
    """Restore every journaled IRQ; ``rows`` is the plan of the current state (for reporting)."""
    by_irq = {row.irq: row for row in rows}
    facts_by_irq = {irq.irq: irq for irq in facts.irqs}
    remaining: Dict[int, JournalEntry] = dict(journal.entries)
    default_entry = journal.default_affinity
    default_row: Optional[DefaultAffinityRow] = None
    results: Dict[int, IrqRow] = {}
    writes = not_restored = 0
    try:
        for irq, entry in sorted(journal.entries.items()):
            row, keep, wrote = _restore_one(entry, by_irq.get(irq), facts_by_irq.get(irq), tree, force, facts)
            writes += wrote
            if row is not None:
                results[irq] = row
            if keep:
                not_restored += 1
            else:
                del remaining[irq]
        if default_entry is not None:
            default_row, keep, wrote = _restore_default(default_entry, tree, facts.topology.nr_cpu_ids)
            writes += wrote
            if keep:
                not_restored += 1
            else:
                default_entry = None
    finally:
        store.save(Journal(remaining, default_entry))
    final_rows = [results.get(row.irq, row) for row in rows]
    return Restoration(final_rows, default_row, writes, not_restored)


def _restore_one(
    entry: JournalEntry, row: Optional[IrqRow], irq: Optional[IrqFacts], tree: KernelTree, force: bool, facts: Facts
) -> Tuple[Optional[IrqRow], bool, int]:
    """(result row, keep the entry, writes made) for one journaled IRQ."""
    nr = facts.topology.nr_cpu_ids
    if row is None or irq is None or row.status == "vanished":
        gone = "journaled, but the IRQ no longer exists; entry dropped"
        return (replace(row, status="vanished", compliant=True, detail=gone) if row else None), False, 0
    if row.current is None:
        return replace(row, status="failed", detail=f"cannot restore {entry.original}: {row.detail}"), True, 0
    original = cpumask.parse_for_file(entry.original, entry.file, nr)
    written = cpumask.parse_for_file(entry.written, entry.file, nr)
    original_text = cpumask.format_cpulist(original)
    if row.current == original:
        return replace(row, status="ok", target=original_text, detail="already holds its original mask"), False, 0
    if not force and not entry.same_interrupt(irq.chip, irq.name):
        detail = (
            f"now belongs to {irq.chip} {irq.name!r}, journaled as {entry.chip} {entry.name!r}; --force restores anyway"
        )
        return replace(row, status="ignored", target=None, detail=detail), True, 0
    if not force and row.current != written:
        detail = (
            f"holds {row.affinity}, not the {cpumask.format_cpulist(written)} the agent wrote "
            "(changed since); --force restores anyway"
        )
        return replace(row, status="ignored", target=None, detail=detail), True, 0
    outcome = write_and_verify(tree, row.irq, original, entry.file, nr)
    wrote = 1 if outcome.ok else 0
    if outcome.ok and outcome.readback == original:
        compliant = row.destination == "none" or not (original & facts.topology.online & ~row.reachable)
        return (
            replace(
                row,
                status="changed",
                target=original_text,
                target_mask=original,
                compliant=compliant,
                errno=None,
                detail="restored the original mask",
            ),
            False,
            wrote,
        )
    if outcome.vanished:
        return replace(row, status="vanished", compliant=True, errno=outcome.errno, detail=outcome.detail), False, wrote
    status = "managed" if outcome.errno in ("EIO", "EPERM") else "failed"
    detail = outcome.detail or f"restoring {original_text} reads back {outcome.readback_text}"
    return replace(row, status=status, errno=outcome.errno, target=original_text, detail=detail), True, wrote


def _restore_default(entry: JournalEntry, tree: KernelTree, nr: int) -> Tuple[DefaultAffinityRow, bool, int]:
    current_text = (tree.read_optional(DEFAULT_AFFINITY) or "").strip()
    original = cpumask.parse_hexmask(entry.original, nr)
    try:
        current: Optional[int] = cpumask.parse_hexmask(current_text, nr)
    except cpumask.CpumaskError:
        current = None
    row = DefaultAffinityRow(
        affinity=cpumask.format_cpulist(current) if current is not None else current_text,
        target=cpumask.format_cpulist(original),
        status="ok",
        current=current,
        target_mask=original,
    )
    if current == original:
        return replace(row, detail="already holds its original mask"), False, 0
    try:
        tree.write_default_affinity(entry.original)
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            raise FatalWriteError(f"cannot write {tree.path(DEFAULT_AFFINITY)}: {describe_oserror(exc)}") from None
        return replace(row, status="failed", errno=errno_name(exc), detail=describe_oserror(exc)), True, 0
    return replace(row, status="changed", detail="restored the original mask"), False, 1
