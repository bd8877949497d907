"""Turn the plan's planned writes into verified writes: journal first, write, read back.

Each write's outcome is a ``RowChange``; the report rows are the plan's rows with them.

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

from dataclasses import dataclass

from irqagent import cpumask, delivery
from irqagent.errors import IrqagentError, StateError
from irqagent.journal import JournalWriteError, new_entry
from irqagent.journal_entry import settled
from irqagent.kernel import DEFAULT_AFFINITY, PROC_IRQ, describe_oserror
from irqagent.outcomes import default_affinity_outcome, errno_name, outcome_of
from irqagent.plan import DEFAULT_AFFINITY_FILE
from irqagent.records import frozen, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Tuple

    from irqagent.journal import Journal, JournalStore
    from irqagent.journal_entry import JournalEntry
    from irqagent.kernel import KernelTree
    from irqagent.outcomes import Outcome
    from irqagent.plan import DefaultAffinityRow, IrqRow, Plan, PlannedWrite, Status
    from irqagent.report import Report
    from irqagent.topology import Topology


class FatalWriteError(IrqagentError):
    """/proc is read-only or writes are not permitted: nothing can be changed."""


class UnrecordedWrites(StateError):
    """Writes were made but the journal could not be updated after them.  The journal
    saved before the writes accounts for every one; ``execution`` holds the results."""

    def __init__(self, message: str, execution: Execution):
        super().__init__(message)
        self.execution = execution
        self.report: Optional[Report] = None  # set by the runner: the report of what was done


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


@frozen
class RowChange:
    """New values for a report row: what a write came to, or what restore decided."""

    status: Status
    detail: str
    target: Optional[str] = None
    errno: Optional[str] = None
    compliant: Optional[bool] = None  # None: as it was

    def to_row(self, row: IrqRow) -> IrqRow:
        compliant = row.compliant if self.compliant is None else self.compliant
        return replace(
            row, status=self.status, detail=self.detail, target=self.target, errno=self.errno, compliant=compliant
        )

    def to_default_row(self, row: DefaultAffinityRow) -> DefaultAffinityRow:
        return replace(row, status=self.status, detail=self.detail, target=self.target, errno=self.errno)


@frozen
class WriteOutcome:
    ok: bool  # the write was accepted
    errno: Optional[str] = None
    readback: Optional[int] = None  # mask read back after an accepted write
    readback_text: Optional[str] = None
    vanished: bool = False
    detail: str = ""
    outcome: Optional[Outcome] = None  # the errno's meaning when the write was refused


def write_and_verify(tree: KernelTree, irq: int, mask: int, filename: str, nr_cpu_ids: int) -> WriteOutcome:
    """One write of ``mask`` and one read back (``irq`` -1 with ``default_smp_affinity``: the
    default affinity).  Raises FatalWriteError on EROFS/EACCES."""
    default = filename == DEFAULT_AFFINITY_FILE
    text = cpumask.format_for_file(mask, filename, nr_cpu_ids)
    where = tree.path(DEFAULT_AFFINITY) if default else f"{tree.path(PROC_IRQ)}/{irq}/{filename}"
    try:
        if default:
            tree.write_default_affinity(text)
        else:
            tree.write_affinity(irq, text, filename)
    except OSError as exc:
        code = exc.errno or 0
        outcome = default_affinity_outcome(code) if default else outcome_of(code)
        if outcome.fatal:
            raise FatalWriteError(f"cannot write {where}: {describe_oserror(exc)}") from None
        detail = f"writing {text} failed: {describe_oserror(exc)}"
        return WriteOutcome(
            False,
            errno_name(code),
            vanished=outcome.status == "vanished",
            detail=f"{detail}: {outcome.detail}" if outcome.detail else detail,
            outcome=outcome,
        )
    try:
        raw = _read_back(tree, irq, filename)
    except OSError as exc:
        vanished = not default and outcome_of(exc.errno or 0).status == "vanished"
        return WriteOutcome(
            True, vanished=vanished, detail=f"wrote {text} but cannot read it back: {describe_oserror(exc)}"
        )
    try:
        readback = cpumask.parse_for_file(raw.strip(), filename, nr_cpu_ids)
    except cpumask.CpumaskError as exc:
        return WriteOutcome(True, detail=f"wrote {text} but reads back garbage: {exc}", readback_text=raw.strip())
    return WriteOutcome(True, readback=readback, readback_text=cpumask.format_for_file(readback, filename, nr_cpu_ids))


def _read_back(tree: KernelTree, irq: int, filename: str) -> str:
    if filename == DEFAULT_AFFINITY_FILE:
        return tree.read_default_affinity()
    return tree.read_affinity(irq, filename)[0]


@frozen
class Placement:
    """What the kernel did with an accepted write: the status it earns and why."""

    status: Status
    compliant: bool
    detail: str = ""


def placement_after_write(tree: KernelTree, write: PlannedWrite, target: int, topology: Topology) -> Placement:
    """Judge an accepted write by the IRQ's effective affinity, read after it: the mask reads
    back as written at once even when the kernel has not moved the IRQ (``irqagent.delivery``).

    ``changed``: the vector is on a CPU of ``target``; a chip that moves at once and did not
    is ``failed``; a deferring chip whose vector is elsewhere is ``pending`` (a reachable CPU:
    the next interrupt completes the move) or ``stuck`` (an unreachable one)."""
    unreachable = topology.online & ~write.reachable
    effective_text = tree.read_effective(write.irq)
    effective = delivery.parse_effective(effective_text, topology.nr_cpu_ids)
    move = delivery.movement(target, effective, unreachable)
    if move.state == "unknown":
        return Placement("changed", True, move.detail)
    if move.state == "settled":
        return Placement("changed", True)
    compliant = move.state != "stuck"
    if delivery.moves_at_once(write.chip):
        return Placement(
            "failed",
            compliant,
            f"{write.chip} moves an IRQ when it is written, but effective_affinity_list still reads "
            f"{effective_text} after the kernel accepted {cpumask.format_cpulist(target)}",
        )
    return Placement(move.state, compliant, move.detail)


@dataclass
class Execution:
    """What a run of the executor left: the report rows and the number of writes made."""

    rows: List[IrqRow]
    default_affinity: Optional[DefaultAffinityRow]
    writes: int


def apply_plan(plan: Plan, tree: KernelTree, store: JournalStore, journal: Journal, topology: Topology) -> Execution:
    """Make every planned write (the IRQs', then the default affinity's); return the results.

    ``journal`` is the journal to build on (the runner has dropped what must not be
    kept); it is saved with each IRQ's pending write before the first write."""
    nr_cpu_ids = topology.nr_cpu_ids
    pending = plan.writes
    default = plan.default_write
    if not pending and default is None:
        return Execution(list(plan.rows), plan.default_affinity, 0)

    # 1. Journal every original, and the mask about to be written, before the first write.
    intended: Dict[int, JournalEntry] = dict(journal.entries)
    for write in pending:
        intended[write.irq] = _journal_entry(write, journal.entries.get(write.irq), nr_cpu_ids)
    default_intended = journal.default_affinity
    if default is not None:
        default_intended = _journal_entry(default, journal.default_affinity, nr_cpu_ids)
    try:
        store.save(replace(journal, entries=intended, default_affinity=default_intended))
    except JournalWriteError as exc:
        raise StateError(f"{exc}: refusing to change IRQs it could not record (nothing was changed)") from None

    # 2. Write and verify, one IRQ at a time; one failure never stops the others.
    final: Dict[int, JournalEntry] = dict(intended)
    final_default = default_intended
    changed: List[int] = []
    results: Dict[int, RowChange] = {}
    default_result: Optional[RowChange] = None
    writes = 0
    stopped: Optional[IrqagentError] = None

    def journal_first(entry: JournalEntry) -> None:
        """Save the journal with a new pending write (the ENOSPC fallback) before making it.
        Only IRQs have a fallback: default_smp_affinity's refusals never widen."""
        assert entry.irq >= 0, "default_smp_affinity has no fallback write"
        _put(final, entry.irq, entry)
        store.save(replace(journal, entries=final, default_affinity=final_default))

    try:
        for write in pending:
            result, entry, wrote = _execute(write, tree, intended[write.irq], topology, journal_first)
            results[write.irq] = result
            writes += wrote
            if wrote:
                changed.append(write.irq)
            _put(final, write.irq, entry)
        if default is not None and default_intended is not None:
            default_result, final_default, wrote = _execute(default, tree, default_intended, topology, journal_first)
            writes += wrote
    except (FatalWriteError, JournalWriteError) as exc:
        stopped = exc
        for write in pending:  # not written: each entry goes back to what it was before
            if write.irq not in results:
                _put(final, write.irq, settled(intended[write.irq], None))
        if default is not None and default_result is None and default_intended is not None:
            final_default = settled(default_intended, None)
    rows = [_reported(row, results[row.irq]) if row.irq in results else row for row in plan.rows]
    default_row = plan.default_affinity
    if default_row is not None and default_result is not None:
        default_row = replace(default_result, detail=_join(default_row.detail, default_result.detail)).to_default_row(
            default_row
        )
    execution = Execution(rows, default_row, writes)
    what = changed_phrase(changed, default_result is not None and default_result.status == "changed")

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


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _reported(row: IrqRow, result: RowChange) -> IrqRow:
    """The planned row with what its write came to (the plan's detail first)."""
    return replace(result, detail=_join(row.detail, result.detail)).to_row(row)


def _put(entries: Dict[int, JournalEntry], irq: int, entry: Optional[JournalEntry]) -> None:
    if entry is None:
        entries.pop(irq, None)
    else:
        entries[irq] = entry


def _journal_entry(write: PlannedWrite, existing: Optional[JournalEntry], nr_cpu_ids: int) -> JournalEntry:
    """The entry to journal before writing ``write.target``.  When the existing entry
    accounts for the current mask (original, written or pending), its original stays and
    the current mask is kept as ``written``; else the current mask is the original."""
    target_text = cpumask.format_for_file(write.target, write.file, nr_cpu_ids)
    current_text = cpumask.format_for_file(write.current, write.file, nr_cpu_ids)
    if (
        existing is not None
        and existing.same_interrupt(write.chip, write.name)
        and existing.file == write.file
        and existing.accounts_for(write.current)
    ):
        held = None if write.current == existing.mask(existing.original) else current_text
        return replace(existing, written=held, pending=target_text)
    return new_entry(write.irq, current_text, None, write.chip, write.name, write.file, pending=target_text)


def _execute(
    write: PlannedWrite,
    tree: KernelTree,
    entry: JournalEntry,
    topology: Topology,
    journal_first: Callable[[JournalEntry], None],
) -> Tuple[RowChange, Optional[JournalEntry], int]:
    """(what the write came to, journal entry to keep or None, writes made).  The change's
    detail holds only what the executor adds to the plan's."""
    nr_cpu_ids = topology.nr_cpu_ids
    planned = cpumask.format_cpulist(write.target)
    outcome = write_and_verify(tree, write.irq, write.target, write.file, nr_cpu_ids)
    target = write.target
    first_errno = outcome.errno
    details = []
    if outcome.outcome is not None and outcome.outcome.widen and write.fallback:
        larger = cpumask.format_cpulist(write.fallback)
        details.append(f"{outcome.errno} ({outcome.outcome.detail}) on CPUs {planned}: retried on {larger}")
        target = write.fallback
        entry = replace(entry, pending=cpumask.format_for_file(target, write.file, nr_cpu_ids))
        journal_first(entry)
        outcome = write_and_verify(tree, write.irq, target, write.file, nr_cpu_ids)
    errno_text = outcome.errno or first_errno
    if not outcome.ok:
        details.append(outcome.detail)
        assert outcome.outcome is not None
        status = outcome.outcome.status
        if status == "vanished":
            return RowChange(status, _join(*details), None, errno_text, compliant=True), None, 0
        return RowChange(status, _join(*details), planned, errno_text), settled(entry, None), 0
    if outcome.readback == target:
        placed = placement_after_write(tree, write, target, topology)
        details.append(placed.detail)
        result = RowChange(placed.status, _join(*details), cpumask.format_cpulist(target), errno_text, placed.compliant)
        return result, settled(entry, outcome.readback_text), 1
    if outcome.vanished:
        details.append(outcome.detail)
        return RowChange("vanished", _join(*details), planned, errno_text, compliant=True), None, 1
    held = cpumask.format_cpulist(outcome.readback or 0)
    details.append(outcome.detail or f"the kernel accepted {cpumask.format_cpulist(target)} but holds {held}")
    if outcome.readback is None:  # unknown: keep both the previous and the new write
        return RowChange("failed", _join(*details), planned, errno_text, compliant=False), entry, 1
    compliant = not (outcome.readback & topology.online & ~write.reachable)
    kept = settled(entry, outcome.readback_text)
    return RowChange("failed", _join(*details), planned, errno_text, compliant=compliant), kept, 1
