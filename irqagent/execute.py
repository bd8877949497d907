"""Turn ``would-change`` rows into verified writes: journal first, write, read back.

Order of events for one ``apply``:

1. every IRQ about to be written gets an entry with its original mask, the mask
   the agent left in it before (if any) and the mask about to be written
   (``pending``), and the journal is replaced atomically and durably -- before
   the first write.  If that save fails, nothing is written;
2. each IRQ is written with one ``write()`` and read back; the kernel's errno
   decides the status (``irqagent.outcomes``; the failure matrix is in README.md);
3. the journal is replaced again with what each IRQ really holds, dropping the
   entries of IRQs that were not changed after all.

A kill at any point leaves a journal whose entries account for whatever each IRQ
holds (original, previous write or new write): ``irqagent restore`` can always undo.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from irqagent import cpumask
from irqagent.errors import IrqagentError, StateError
from irqagent.journal import Journal, JournalEntry, JournalStore, JournalWriteError, new_entry, settled
from irqagent.kernel import DEFAULT_AFFINITY, PROC_IRQ, KernelTree, describe_oserror
from irqagent.outcomes import Outcome, errno_name, outcome_of
from irqagent.plan import DefaultAffinityRow, IrqRow, Plan
from irqagent.topology import Topology

DEFAULT_AFFINITY_FILE = "default_smp_affinity"


class FatalWriteError(IrqagentError):
    """/proc is read-only or writes are not permitted: nothing can be changed."""


class UnrecordedWrites(StateError):
    """Writes were made but the journal could not be updated after them.  The journal
    saved before the writes accounts for every one; ``execution`` holds the results."""

    def __init__(self, message: str, execution: "Execution"):
        super().__init__(message)
        self.execution = execution
        self.report = None  # set by the runner: the report of what was done


def numbers_text(numbers: List[int]) -> str:
    """``"1,4,24-30"``: IRQ numbers as ranges, for messages."""
    parts: List[str] = []
    ordered = sorted(set(numbers))
    index = 0
    while index < len(ordered):
        end = index
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        parts.append(str(ordered[index]) if end == index else f"{ordered[index]}-{ordered[end]}")
        index = end + 1
    return ",".join(parts)


def changed_phrase(irqs: List[int], default: bool) -> str:
    """Exactly what a run changed, for the message that stops it."""
    items = ([f"IRQs {numbers_text(irqs)}"] if irqs else []) + (["default_smp_affinity"] if default else [])
    return " and ".join(items) if items else "nothing"


@dataclass(frozen=True)
class WriteOutcome:
    ok: bool  # the write was accepted
    errno: Optional[str] = None
    readback: Optional[int] = None  # mask read back after an accepted write
    readback_text: Optional[str] = None
    vanished: bool = False
    detail: str = ""
    outcome: Optional[Outcome] = None  # the errno's meaning when the write was refused


def write_and_verify(tree: KernelTree, irq: int, mask: int, filename: str, nr_cpu_ids: int) -> WriteOutcome:
    """One write of ``mask`` and one read back.  Raises FatalWriteError on EROFS/EACCES."""
    text = cpumask.format_for_file(mask, filename, nr_cpu_ids)
    where = f"{tree.path(PROC_IRQ)}/{irq}/{filename}"
    try:
        tree.write_affinity(irq, text, filename)
    except OSError as exc:
        outcome = outcome_of(exc.errno or 0)
        if outcome.fatal:
            raise FatalWriteError(f"cannot write {where}: {describe_oserror(exc)}") from None
        return WriteOutcome(
            False,
            errno_name(exc.errno or 0),
            vanished=outcome.status == "vanished",
            detail=f"writing {text} failed: {describe_oserror(exc)}: {outcome.detail}",
            outcome=outcome,
        )
    try:
        raw, _ = tree.read_affinity(irq, filename)
    except OSError as exc:
        vanished = outcome_of(exc.errno or 0).status == "vanished"
        return WriteOutcome(
            True, vanished=vanished, detail=f"wrote {text} but cannot read it back: {describe_oserror(exc)}"
        )
    try:
        readback = cpumask.parse_for_file(raw.strip(), filename, nr_cpu_ids)
    except cpumask.CpumaskError as exc:
        return WriteOutcome(True, detail=f"wrote {text} but reads back garbage: {exc}", readback_text=raw.strip())
    return WriteOutcome(True, readback=readback, readback_text=cpumask.format_for_file(readback, filename, nr_cpu_ids))


@dataclass
class Execution:
    rows: List[IrqRow]
    default_affinity: Optional[DefaultAffinityRow]
    writes: int


def apply_plan(plan: Plan, tree: KernelTree, store: JournalStore, journal: Journal, topology: Topology) -> Execution:
    """Write every ``would-change`` row (and the default affinity); return the results.

    ``journal`` is the journal to build on (the runner has dropped what must not be
    kept); it is saved with each IRQ's pending write before the first write."""
    nr_cpu_ids = topology.nr_cpu_ids
    pending = [row for row in plan.rows if row.status == "would-change"]
    default = (
        plan.default_affinity if plan.default_affinity and plan.default_affinity.status == "would-change" else None
    )
    if not pending and default is None:
        return Execution(list(plan.rows), plan.default_affinity, 0)

    # 1. Journal every original, and the mask about to be written, before the first write.
    intended: Dict[int, JournalEntry] = dict(journal.entries)
    for row in pending:
        intended[row.irq] = _journal_entry(row, journal.entries.get(row.irq), row.affinity_file, nr_cpu_ids)
    default_intended = journal.default_affinity
    if default is not None:
        default_intended = _journal_entry(default, journal.default_affinity, DEFAULT_AFFINITY_FILE, nr_cpu_ids)
    try:
        store.save(replace(journal, entries=intended, default_affinity=default_intended))
    except JournalWriteError as exc:
        raise StateError(f"{exc}: refusing to change IRQs it could not record (nothing was changed)") from None

    # 2. Write and verify, one IRQ at a time; one failure never stops the others.
    final: Dict[int, JournalEntry] = dict(intended)
    final_default = default_intended
    changed: List[int] = []
    results: Dict[int, IrqRow] = {}
    writes = 0
    default_row = plan.default_affinity
    default_done = False
    stopped: Optional[IrqagentError] = None

    def journal_first(entry: JournalEntry) -> None:
        """Save the journal with a new pending write (the ENOSPC fallback) before making it."""
        _put(final, entry.irq, entry)
        store.save(replace(journal, entries=final, default_affinity=final_default))

    try:
        for row in pending:
            result, entry, wrote = _execute_row(row, tree, intended[row.irq], topology, journal_first)
            results[row.irq] = result
            writes += wrote
            if wrote:
                changed.append(row.irq)
            _put(final, row.irq, entry)
        if default is not None:
            default_row, final_default, wrote = _execute_default(default, tree, default_intended, nr_cpu_ids)
            writes += wrote
            default_done = True
    except (FatalWriteError, JournalWriteError) as exc:
        stopped = exc
        for row in pending:  # not written: each entry goes back to what it was before
            if row.irq not in results:
                _put(final, row.irq, settled(intended[row.irq], None))
        if default is not None and not default_done and default_intended is not None:
            final_default = settled(default_intended, None)
    rows = [results.get(row.irq, row) for row in plan.rows]
    execution = Execution(rows, default_row, writes)
    what = changed_phrase(changed, default_done and default_row.status == "changed")

    # 3. Record what each IRQ really holds now.
    try:
        store.save(replace(journal, entries=final, default_affinity=final_default))
    except JournalWriteError as exc:
        first = f"{stopped}; then " if stopped is not None and not isinstance(stopped, JournalWriteError) else ""
        raise UnrecordedWrites(
            f"{first}{exc}: changed {what}; the journal saved before the writes names every one of them, "
            "so 'irqagent restore' can undo them",
            execution,
        ) from None
    if isinstance(stopped, JournalWriteError):
        raise UnrecordedWrites(
            f"{stopped}: stopped before the write it would have recorded; changed {what} (all journaled)", execution
        )
    if stopped is not None:
        raise FatalWriteError(f"{stopped}; changed {what} before that (journaled)" if writes else str(stopped))
    return execution


def _put(entries: Dict[int, JournalEntry], irq: int, entry: Optional[JournalEntry]) -> None:
    if entry is None:
        entries.pop(irq, None)
    else:
        entries[irq] = entry


def _journal_entry(row, existing: Optional[JournalEntry], filename: str, nr_cpu_ids: int) -> JournalEntry:
    """The entry to journal before writing ``row.target_mask``.  When the existing entry
    accounts for the current mask (original, written or pending), its original stays and
    the current mask is kept as ``written``; else the current mask is the original."""
    irq = getattr(row, "irq", -1)
    chip, name = getattr(row, "chip", ""), getattr(row, "name", "")
    current = row.current or 0
    target_text = cpumask.format_for_file(row.target_mask or 0, filename, nr_cpu_ids)
    current_text = cpumask.format_for_file(current, filename, nr_cpu_ids)
    if (
        existing is not None
        and existing.same_interrupt(chip, name)
        and existing.file == filename
        and existing.accounts_for(current)
    ):
        held = None if current == existing.mask(existing.original) else current_text
        return replace(existing, written=held, pending=target_text)
    return new_entry(irq, current_text, None, chip, name, filename, pending=target_text)


def _execute_row(
    row: IrqRow, tree: KernelTree, entry: JournalEntry, topology: Topology, journal_first
) -> Tuple[IrqRow, Optional[JournalEntry], int]:
    """(result row, journal entry to keep or None, writes made)."""
    nr_cpu_ids = topology.nr_cpu_ids
    assert row.target_mask is not None
    outcome = write_and_verify(tree, row.irq, row.target_mask, row.affinity_file, nr_cpu_ids)
    target = row.target_mask
    first_errno = outcome.errno
    details = [row.detail] if row.detail else []
    if not outcome.ok and outcome.errno == "ENOSPC" and row.fallback_mask:
        tried, larger = cpumask.format_cpulist(target), cpumask.format_cpulist(row.fallback_mask)
        details.append(f"ENOSPC (no free vector) on CPUs {tried}: retried on {larger}")
        target = row.fallback_mask
        entry = replace(entry, pending=cpumask.format_for_file(target, row.affinity_file, nr_cpu_ids))
        journal_first(entry)
        outcome = write_and_verify(tree, row.irq, target, row.affinity_file, nr_cpu_ids)
    errno_text = outcome.errno or first_errno
    if not outcome.ok:
        details.append(outcome.detail)
        assert outcome.outcome is not None
        status = outcome.outcome.status
        compliant = True if status == "vanished" else row.compliant
        target_text = None if status == "vanished" else row.target
        kept = None if status == "vanished" else settled(entry, None)
        return (
            replace(
                row, status=status, errno=errno_text, target=target_text, compliant=compliant, detail="; ".join(details)
            ),
            kept,
            0,
        )
    if outcome.readback == target:
        return (
            replace(
                row,
                status="changed",
                target=cpumask.format_cpulist(target),
                target_mask=target,
                errno=errno_text,
                compliant=True,
                detail="; ".join(details),
            ),
            settled(entry, outcome.readback_text),
            1,
        )
    if outcome.vanished:
        details.append(outcome.detail)
        return replace(row, status="vanished", errno=errno_text, compliant=True, detail="; ".join(details)), None, 1
    held = cpumask.format_cpulist(outcome.readback or 0)
    details.append(outcome.detail or f"the kernel accepted {cpumask.format_cpulist(target)} but holds {held}")
    if outcome.readback is None:  # unknown: keep both the previous and the new write
        return replace(row, status="failed", errno=errno_text, compliant=False, detail="; ".join(details)), entry, 1
    compliant = not (outcome.readback & topology.online & ~row.reachable)
    kept = settled(entry, outcome.readback_text)
    return replace(row, status="failed", errno=errno_text, compliant=compliant, detail="; ".join(details)), kept, 1


def _execute_default(row: DefaultAffinityRow, tree: KernelTree, entry: JournalEntry, nr_cpu_ids: int):
    """(result row, journal entry to keep or None, writes made) for default_smp_affinity."""
    text = cpumask.format_for_file(row.target_mask or 0, DEFAULT_AFFINITY_FILE, nr_cpu_ids)
    try:
        tree.write_default_affinity(text)
    except OSError as exc:
        outcome = outcome_of(exc.errno or 0)
        if outcome.fatal:
            raise FatalWriteError(f"cannot write {tree.path(DEFAULT_AFFINITY)}: {describe_oserror(exc)}") from None
        detail = f"writing {text} failed: {describe_oserror(exc)}"
        return replace(row, status="failed", errno=errno_name(exc.errno or 0), detail=detail), settled(entry, None), 0
    readback_text = (tree.read_optional(DEFAULT_AFFINITY) or "").strip()
    try:
        readback: Optional[int] = cpumask.parse_hexmask(readback_text, nr_cpu_ids)
    except cpumask.CpumaskError:
        readback = None
    if readback == row.target_mask:
        return replace(row, status="changed"), settled(entry, readback_text), 1
    kept = settled(entry, readback_text) if readback is not None else entry
    return replace(row, status="failed", detail=f"wrote {text} but it reads back {readback_text!r}"), kept, 1
