"""``irqagent restore``: put the journaled originals back.

Restore is total: every journal entry ends restored or not restored, with the
reason, and nothing here raises on a strange entry.  An IRQ is restored when it
still holds what the agent wrote or was writing (``--force``: in any case) and
still belongs to the same interrupt (chip and handler names).  Entries of
another root are never used; entries of an earlier boot only with ``--force``.
An original naming CPUs that are no longer possible (the VM was resized down)
is restored as ``original ∩ possible`` when that is not empty, reported as
partial and kept.  An original with no online CPU is accepted by the kernel,
which gives the IRQ its default affinity instead: that is reported, not failed.

``decide`` is pure (it is also ``restore --dry-run``); ``restore`` carries the
decisions out: it journals any write that is not the original itself (a partial
one) before making it, and saves the journal at the end even when the run stops
half-way, so it always names exactly the IRQs still to restore.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from irqagent import cpumask
from irqagent.errors import StateError
from irqagent.execute import DEFAULT_AFFINITY_FILE, Execution, FatalWriteError, changed_phrase, write_and_verify
from irqagent.facts import Facts
from irqagent.journal import Journal, JournalEntry, JournalStore, JournalWriteError, Scope
from irqagent.kernel import DEFAULT_AFFINITY, KernelTree, describe_oserror
from irqagent.outcomes import errno_name, outcome_of
from irqagent.plan import DefaultAffinityRow, IrqRow


@dataclass
class Restoration(Execution):
    not_restored: int = 0  # journaled items left as they are (exit status 1)


@dataclass(frozen=True)
class Decision:
    """What restore does with one journal entry."""

    entry: JournalEntry
    row: IrqRow  # the report row: final unless ``write`` is set ("would-change" then)
    write: Optional[int] = None  # the mask to write
    keep: bool = True  # the entry stays in the journal (when nothing is written)
    partial: bool = False  # ``write`` is original ∩ possible, not the original


def _gone_row(entry: JournalEntry, detail: str, status: str = "vanished") -> IrqRow:
    """A report row for a journaled IRQ that does not exist now."""
    return IrqRow(
        irq=entry.irq,
        chip=entry.chip,
        name=entry.name,
        device=None,
        destination="none",
        affinity="",
        effective=None,
        target=None,
        status=status,
        compliant=True,
        detail=detail,
    )


def _not_restored(entry: JournalEntry, row: Optional[IrqRow], detail: str) -> Decision:
    if row is None:
        return Decision(entry, _gone_row(entry, detail, status="ignored"))
    return Decision(entry, replace(row, status="ignored", target=None, detail=detail))


def decide(facts: Facts, rows: List[IrqRow], journal: Journal, scope: Scope, force: bool) -> List[Decision]:
    """One decision per journaled IRQ (the default affinity is decided apart)."""
    by_irq = {row.irq: row for row in rows}
    facts_by_irq = {irq.irq: irq for irq in facts.irqs}
    relation = journal.relation(scope)
    decisions = []
    for irq, entry in sorted(journal.entries.items()):
        row = by_irq.get(irq)
        if relation == "foreign":
            reason = f"journaled for root {journal.root}, not {scope.root}: entries of another root are never used"
            decisions.append(_not_restored(entry, row, reason))
            continue
        if relation == "stale" and not force:
            reason = (
                f"journaled in an earlier boot (boot ID {journal.boot_id}): history, not written back; "
                "--force restores anyway"
            )
            decisions.append(_not_restored(entry, row, reason))
            continue
        irq_facts = facts_by_irq.get(irq)
        if row is None or irq_facts is None or row.status == "vanished":
            gone = "journaled, but the IRQ no longer exists; entry dropped"
            decisions.append(
                Decision(
                    entry,
                    replace(row, status="vanished", compliant=True, detail=gone) if row else _gone_row(entry, gone),
                    keep=False,
                )
            )
            continue
        decisions.append(_decide_one(entry, row, irq_facts.chip, irq_facts.name, facts, force))
    return decisions


def _decide_one(entry: JournalEntry, row: IrqRow, chip: str, name: str, facts: Facts, force: bool) -> Decision:
    topology = facts.topology
    if row.current is None:
        return Decision(entry, replace(row, status="failed", detail=f"cannot restore {entry.original}: {row.detail}"))
    if entry.file != row.affinity_file:
        detail = f"journaled for {entry.file}, but the IRQ now has {row.affinity_file}: not restored"
        return _not_restored(entry, row, detail)
    original = entry.mask(entry.original)
    if original is None:  # decode() checks every mask: only a hand-built journal gets here
        return _not_restored(entry, row, f"the journaled original {entry.original!r} is not a mask")
    original_text = cpumask.format_cpulist(original)
    if row.current == original:
        return Decision(
            entry, replace(row, status="ok", target=original_text, detail="already holds its original mask"), keep=False
        )
    if not force and not entry.same_interrupt(chip, name):
        detail = f"now belongs to {chip} {name!r}, journaled as {entry.chip} {entry.name!r}; --force restores anyway"
        return _not_restored(entry, row, detail)
    possible = topology.possible | topology.online
    target = original & possible
    gone_cpus = original & ~possible
    if gone_cpus and not target:
        detail = (
            f"none of the original CPUs {original_text} is possible any more (the last possible CPU is "
            f"{topology.nr_cpu_ids - 1}): not restored"
        )
        return _not_restored(entry, row, detail)
    if gone_cpus and row.current == target:  # restored partially before: still the agent's
        detail = _would_restore(original, target).replace("would restore", "already holds", 1)
        held = replace(entry, written=cpumask.format_for_file(target, entry.file, topology.nr_cpu_ids))
        return Decision(held, replace(row, status="ok", target=row.affinity, detail=detail))
    if not force and not entry.holds_agent_mask(row.current):
        wrote = entry.written or entry.pending or ""
        detail = f"holds {row.affinity}, not the {wrote} the agent wrote (changed since); --force restores anyway"
        return _not_restored(entry, row, detail)
    planned = replace(
        row,
        status="would-change",
        target=cpumask.format_cpulist(target),
        target_mask=target,
        detail=_would_restore(original, target),
    )
    return Decision(entry, planned, write=target, keep=bool(gone_cpus), partial=bool(gone_cpus))


def _decide_default(journal: Journal, scope: Scope, facts: Facts, force: bool) -> Optional[Decision]:
    entry = journal.default_affinity
    if entry is None:
        return None
    nr = facts.topology.nr_cpu_ids
    text = (facts.default_affinity_text or "").strip()
    try:
        current: Optional[int] = cpumask.parse_hexmask(text, nr)
    except cpumask.CpumaskError:
        current = None
    row = DefaultAffinityRow(
        affinity=cpumask.format_cpulist(current) if current is not None else text,
        target=None,
        status="ignored",
        current=current,
    )
    relation = journal.relation(scope)
    if relation == "foreign":
        return Decision(entry, replace(row, detail=f"journaled for root {journal.root}: never used"))
    if relation == "stale" and not force:
        return Decision(entry, replace(row, detail="journaled in an earlier boot: --force restores it"))
    original = entry.mask(entry.original) or 0
    possible = facts.topology.possible | facts.topology.online
    target = original & possible
    if current == original:
        return Decision(
            entry, replace(row, status="ok", target=row.affinity, detail="already holds its original mask"), keep=False
        )
    if not target:
        return Decision(
            entry,
            replace(row, detail=f"none of the original CPUs {cpumask.format_cpulist(original)} is possible any more"),
        )
    partial = original != target
    if not force and not entry.holds_agent_mask(current) and current != target:
        return Decision(entry, replace(row, detail="changed since the agent wrote it; --force restores anyway"))
    if current == target:
        return Decision(
            replace(entry, written=cpumask.format_for_file(target, entry.file, facts.topology.nr_cpu_ids)),
            replace(
                row,
                status="ok",
                target=row.affinity,
                detail="already holds its original mask as far as CPUs are possible",
            ),
        )
    planned = replace(
        row,
        status="would-change",
        target=cpumask.format_cpulist(target),
        target_mask=target,
        detail=_would_restore(original, target),
    )
    return Decision(entry, planned, write=target, keep=partial, partial=partial)


def _would_restore(original: int, target: int) -> str:
    """The detail of a planned restore (a partial one says what is missing)."""
    if original == target:
        return "would restore the original mask"
    gone = cpumask.cpus_phrase(original & ~target)
    kept, whole = cpumask.format_cpulist(target), cpumask.format_cpulist(original)
    return f"would restore {kept}: {gone} of the original {whole} no longer possible"


def _restored(decision: Decision) -> str:
    """The detail of a restore carried out."""
    if not decision.partial:
        return "restored the original mask"
    return "partially " + decision.row.detail.replace("would restore", "restored", 1)


def restore(
    facts: Facts,
    rows: List[IrqRow],
    tree: KernelTree,
    store: JournalStore,
    journal: Journal,
    scope: Scope,
    force: bool,
    dry_run: bool = False,
) -> Restoration:
    """Restore every journaled IRQ; ``rows`` is the plan of the current state (for reporting)."""
    decisions = decide(facts, rows, journal, scope, force)
    default = _decide_default(journal, scope, facts, force)
    if dry_run:
        kept = sum(1 for d in decisions + ([default] if default else []) if d.keep)
        return Restoration(_rows(rows, decisions), default.row if default else None, 0, kept)
    nr = facts.topology.nr_cpu_ids
    remaining: Dict[int, JournalEntry] = dict(journal.entries)
    remaining_default = journal.default_affinity
    partial = {d.entry.irq: replace(d.entry, pending=_text(d, nr)) for d in decisions if d.partial}
    if partial or (default is not None and default.partial):
        # Journal first: after a kill, the partial mask must still be recognised as the agent's.
        remaining.update(partial)
        if default is not None and default.partial:
            remaining_default = replace(default.entry, pending=_text(default, nr))
        try:
            store.save(replace(journal, entries=remaining, default_affinity=remaining_default))
        except JournalWriteError as exc:
            raise StateError(f"{exc}: nothing was restored") from None
    done: List[Decision] = []
    writes = 0
    changed: List[int] = []
    default_row = default.row if default else None
    try:
        for decision in decisions:
            row, entry, wrote = _carry_out(decision, tree, facts)
            done.append(replace(decision, row=row, keep=entry is not None))
            writes += wrote
            if wrote:
                changed.append(decision.entry.irq)
            if entry is None:
                remaining.pop(decision.entry.irq, None)
            else:
                remaining[decision.entry.irq] = entry
        if default is not None:
            default_row, remaining_default, wrote = _carry_out_default(default, tree, facts)
            writes += wrote
    finally:
        try:
            store.save(replace(journal, entries=remaining, default_affinity=remaining_default))
        except JournalWriteError as exc:
            raise StateError(
                f"{exc}: restored {changed_phrase(changed, False)}; the journal still names them "
                "(a later restore finds them back to their originals)"
            ) from None
    kept = len(remaining) + (remaining_default is not None)
    return Restoration(_rows(rows, done), default_row, writes, kept)


def _text(decision: Decision, nr: int) -> str:
    return cpumask.format_for_file(decision.write or 0, decision.entry.file, nr)


def _rows(rows: List[IrqRow], decisions: List[Decision]) -> List[IrqRow]:
    """The current rows with each journaled IRQ's result; journaled IRQs that do not exist
    now are listed too, in IRQ order."""
    results = {d.entry.irq: d.row for d in decisions}
    merged = [results.pop(row.irq, row) for row in rows]
    if results:
        merged = sorted(merged + list(results.values()), key=lambda row: row.irq)
    return merged


def _carry_out(decision: Decision, tree: KernelTree, facts: Facts) -> Tuple[IrqRow, Optional[JournalEntry], int]:
    """(result row, entry to keep or None, writes made)."""
    entry, row = decision.entry, decision.row
    if decision.write is None:
        return row, entry if decision.keep else None, 0
    target = decision.write
    online = facts.topology.online
    outcome = write_and_verify(tree, entry.irq, target, entry.file, facts.topology.nr_cpu_ids)
    target_text = cpumask.format_cpulist(target)
    if not outcome.ok:
        assert outcome.outcome is not None
        status = outcome.outcome.status
        result = replace(row, status=status, errno=outcome.errno, detail=outcome.detail)
        return result, None if status == "vanished" else entry, 0
    if outcome.vanished:
        return replace(row, status="vanished", compliant=True, detail=outcome.detail), None, 1
    if outcome.readback == target or (not target & online and outcome.readback is not None):
        if outcome.readback == target:
            detail = _restored(decision)
        else:
            detail = (
                f"restored the original mask {target_text}, which has no online CPU: the kernel accepted it and "
                f"gave the IRQ its default affinity, {outcome.readback_text}"
            )
        held = outcome.readback or 0
        compliant = row.destination == "none" or not (held & online & ~row.reachable)
        result = replace(
            row,
            status="changed",
            affinity=row.affinity,
            target=cpumask.format_cpulist(held),
            target_mask=held,
            compliant=compliant,
            errno=None,
            detail=detail,
        )
        keep = replace(entry, written=outcome.readback_text, pending=None) if decision.partial else None
        return result, keep, 1
    detail = outcome.detail or f"restoring {target_text} reads back {outcome.readback_text}"
    keep = replace(entry, written=outcome.readback_text, pending=None) if outcome.readback is not None else entry
    return replace(row, status="failed", errno=None, detail=detail), keep, 1


def _carry_out_default(
    decision: Decision, tree: KernelTree, facts: Facts
) -> Tuple[DefaultAffinityRow, Optional[JournalEntry], int]:
    entry, row = decision.entry, decision.row
    if decision.write is None:
        return row, entry if decision.keep else None, 0
    text = cpumask.format_for_file(decision.write, DEFAULT_AFFINITY_FILE, facts.topology.nr_cpu_ids)
    try:
        tree.write_default_affinity(text)
    except OSError as exc:
        outcome = outcome_of(exc.errno or 0)
        if outcome.fatal:
            raise FatalWriteError(f"cannot write {tree.path(DEFAULT_AFFINITY)}: {describe_oserror(exc)}") from None
        failed = replace(row, status="failed", errno=errno_name(exc.errno or 0), detail=describe_oserror(exc))
        return failed, entry, 0
    detail = _restored(decision)
    keep = replace(entry, written=text, pending=None) if decision.partial else None
    return replace(row, status="changed", detail=detail), keep, 1
