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

from dataclasses import dataclass

from irqagent import cpumask
from irqagent.errors import StateError
from irqagent.execute import Execution, RowChange, changed_phrase, placement_after_write, write_and_verify
from irqagent.journal import JournalWriteError
from irqagent.plan import DEFAULT_AFFINITY_FILE, DefaultAffinityRow, IrqRow, PlannedWrite
from irqagent.records import frozen, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Tuple

    from irqagent.controllers import Controller
    from irqagent.facts import Facts, IrqFacts
    from irqagent.journal import Journal, JournalStore, Scope
    from irqagent.journal_entry import JournalEntry
    from irqagent.kernel import KernelTree
    from irqagent.plan import Plan, Status


@dataclass
class Restoration(Execution):
    not_restored: int = 0  # journaled items left as they are (exit status 1)


@frozen
class Decision:
    """What restore does with one journal entry (an IRQ's, or the default affinity's)."""

    entry: JournalEntry
    change: RowChange  # the report row's new values: final unless ``write`` is set ("would-change" then)
    write: Optional[PlannedWrite] = None
    keep: bool = True  # the entry stays in the journal (when nothing is written)
    partial: bool = False  # ``write`` is original ∩ possible, not the original


def _gone_row(entry: JournalEntry) -> IrqRow:
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
        status="vanished",
        compliant=True,
    )


def _not_restored(entry: JournalEntry, detail: str) -> Decision:
    return Decision(entry, RowChange("ignored", detail))


def decide(
    facts: Facts, plan: Plan, controllers: Mapping[str, Controller], journal: Journal, scope: Scope, force: bool
) -> List[Decision]:
    """One decision per journaled IRQ (the default affinity is decided apart); ``plan`` is
    the plan of the current state."""
    statuses = {row.irq: row.status for row in plan.rows}
    details = {row.irq: row.detail for row in plan.rows}
    facts_by_irq = {irq.irq: irq for irq in facts.irqs}
    relation = journal.relation(scope)
    decisions = []
    for irq, entry in sorted(journal.entries.items()):
        if relation == "foreign":
            reason = f"journaled for root {journal.root}, not {scope.root}: entries of another root are never used"
            decisions.append(_not_restored(entry, reason))
            continue
        if relation == "stale" and not force:
            reason = (
                f"journaled in an earlier boot (boot ID {journal.boot_id}): history, not written back; "
                "--force restores anyway"
            )
            decisions.append(_not_restored(entry, reason))
            continue
        irq_facts = facts_by_irq.get(irq)
        if irq_facts is None or statuses.get(irq) == "vanished":
            gone = "journaled, but the IRQ no longer exists; entry dropped"
            decisions.append(Decision(entry, RowChange("vanished", gone, compliant=True), keep=False))
            continue
        current = plan.masks.get(irq)
        if current is None:
            change = RowChange("failed", f"cannot restore {entry.original}: {details.get(irq, '')}")
            decisions.append(Decision(entry, change))
            continue
        decisions.append(_decide_one(entry, irq_facts, current, controllers[irq_facts.chip], facts, force))
    return decisions


def _decide_one(
    entry: JournalEntry, irq: IrqFacts, current: int, controller: Controller, facts: Facts, force: bool
) -> Decision:
    topology = facts.topology
    if entry.file != irq.affinity_file:
        detail = f"journaled for {entry.file}, but the IRQ now has {irq.affinity_file}: not restored"
        return _not_restored(entry, detail)
    original = entry.mask(entry.original)
    if original is None:  # decode() checks every mask: only a hand-built journal gets here
        return _not_restored(entry, f"the journaled original {entry.original!r} is not a mask")
    original_text = cpumask.format_cpulist(original)
    if current == original:
        return Decision(entry, RowChange("ok", "already holds its original mask", original_text), keep=False)
    if not force and not entry.same_interrupt(irq.chip, irq.name):
        detail = (
            f"now belongs to {irq.chip} {irq.name!r}, journaled as {entry.chip} {entry.name!r}; --force restores anyway"
        )
        return _not_restored(entry, detail)
    possible = topology.possible | topology.online
    target = original & possible
    gone_cpus = original & ~possible
    affinity = cpumask.format_cpulist(current)
    if gone_cpus and not target:
        detail = (
            f"none of the original CPUs {original_text} is possible any more (the last possible CPU is "
            f"{topology.nr_cpu_ids - 1}): not restored"
        )
        return _not_restored(entry, detail)
    if gone_cpus and current == target:  # restored partially before: still the agent's
        detail = _would_restore(original, target).replace("would restore", "already holds", 1)
        held = replace(entry, written=cpumask.format_for_file(target, entry.file, topology.nr_cpu_ids))
        return Decision(held, RowChange("ok", detail, affinity))
    if not force and not entry.holds_agent_mask(current):
        wrote = entry.written or entry.pending or ""
        detail = f"holds {affinity}, not the {wrote} the agent wrote (changed since); --force restores anyway"
        return _not_restored(entry, detail)
    # A fixed controller (destination none) keeps whatever it is given: any mask complies there.
    reachable = controller.usable if controller.destination != "none" else topology.online
    write = PlannedWrite(entry.irq, entry.file, current, target, reachable=reachable, chip=irq.chip, name=irq.name)
    planned = RowChange("would-change", _would_restore(original, target), cpumask.format_cpulist(target))
    return Decision(entry, planned, write, keep=bool(gone_cpus), partial=bool(gone_cpus))


def _default_row(facts: Facts) -> Tuple[DefaultAffinityRow, Optional[int]]:
    """The default affinity's row as it stands (status to be decided), and its mask."""
    text = (facts.default_affinity_text or "").strip()
    try:
        current: Optional[int] = cpumask.parse_hexmask(text, facts.topology.nr_cpu_ids)
    except cpumask.CpumaskError:
        current = None
    affinity = cpumask.format_cpulist(current) if current is not None else text
    return DefaultAffinityRow(affinity=affinity, target=None, status="ignored"), current


def _decide_default(journal: Journal, scope: Scope, facts: Facts, force: bool) -> Optional[Decision]:
    entry = journal.default_affinity
    if entry is None:
        return None
    row, current = _default_row(facts)
    relation = journal.relation(scope)
    if relation == "foreign":
        return Decision(entry, RowChange("ignored", f"journaled for root {journal.root}: never used"))
    if relation == "stale" and not force:
        return Decision(entry, RowChange("ignored", "journaled in an earlier boot: --force restores it"))
    original = entry.mask(entry.original) or 0
    possible = facts.topology.possible | facts.topology.online
    target = original & possible
    if current == original:
        return Decision(entry, RowChange("ok", "already holds its original mask", row.affinity), keep=False)
    if not target:
        detail = f"none of the original CPUs {cpumask.format_cpulist(original)} is possible any more"
        return Decision(entry, RowChange("ignored", detail))
    partial = original != target
    if not force and not entry.holds_agent_mask(current) and current != target:
        return Decision(entry, RowChange("ignored", "changed since the agent wrote it; --force restores anyway"))
    if current == target:
        return Decision(
            replace(entry, written=cpumask.format_for_file(target, entry.file, facts.topology.nr_cpu_ids)),
            RowChange("ok", "already holds its original mask as far as CPUs are possible", row.affinity),
        )
    write = PlannedWrite(-1, DEFAULT_AFFINITY_FILE, current or 0, target)
    planned = RowChange("would-change", _would_restore(original, target), cpumask.format_cpulist(target))
    return Decision(entry, planned, write, keep=partial, partial=partial)


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
    return "partially " + decision.change.detail.replace("would restore", "restored", 1)


def restore(
    facts: Facts,
    plan: Plan,
    controllers: Mapping[str, Controller],
    tree: KernelTree,
    store: JournalStore,
    journal: Journal,
    scope: Scope,
    force: bool,
    dry_run: bool = False,
) -> Restoration:
    """Restore every journaled IRQ; ``plan`` is the plan of the current state (for reporting)."""
    decisions = decide(facts, plan, controllers, journal, scope, force)
    default = _decide_default(journal, scope, facts, force)
    default_row = _default_row(facts)[0] if default else None
    if dry_run:
        kept = sum(1 for d in decisions + ([default] if default else []) if d.keep)
        return Restoration(_rows(plan.rows, decisions), _reported_default(default_row, default), 0, kept)
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
    try:
        for decision in decisions:
            change, entry, wrote = _carry_out(decision, tree, facts)
            done.append(replace(decision, change=change, keep=entry is not None))
            writes += wrote
            if wrote:
                changed.append(decision.entry.irq)
            if entry is None:
                remaining.pop(decision.entry.irq, None)
            else:
                remaining[decision.entry.irq] = entry
        if default is not None:
            change, remaining_default, wrote = _carry_out(default, tree, facts)
            default = replace(default, change=change)
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
    return Restoration(_rows(plan.rows, done), _reported_default(default_row, default), writes, kept)


def _text(decision: Decision, nr: int) -> str:
    assert decision.write is not None
    return cpumask.format_for_file(decision.write.target, decision.entry.file, nr)


def _reported_default(row: Optional[DefaultAffinityRow], decision: Optional[Decision]) -> Optional[DefaultAffinityRow]:
    if row is None or decision is None:
        return None
    return decision.change.to_default_row(row)


def _rows(rows: Tuple[IrqRow, ...], decisions: List[Decision]) -> List[IrqRow]:
    """The current rows with each journaled IRQ's result; journaled IRQs that do not exist
    now are listed too, in IRQ order."""
    results = {d.entry.irq: d for d in decisions}
    merged = [results.pop(row.irq).change.to_row(row) if row.irq in results else row for row in rows]
    if results:
        gone = [d.change.to_row(_gone_row(d.entry)) for d in results.values()]
        merged = sorted(merged + gone, key=lambda row: row.irq)
    return merged


def _carry_out(decision: Decision, tree: KernelTree, facts: Facts) -> Tuple[RowChange, Optional[JournalEntry], int]:
    """(the row's new values, entry to keep or None, writes made)."""
    entry, change, write = decision.entry, decision.change, decision.write
    if write is None:
        return change, entry if decision.keep else None, 0
    target = write.target
    online = facts.topology.online
    outcome = write_and_verify(tree, write.irq, target, write.file, facts.topology.nr_cpu_ids)
    target_text = cpumask.format_cpulist(target)
    if not outcome.ok:
        assert outcome.outcome is not None
        status = outcome.outcome.status
        result = replace(change, status=status, errno=outcome.errno, detail=outcome.detail)
        return result, None if status == "vanished" else entry, 0
    if outcome.vanished:
        return replace(change, status="vanished", compliant=True, detail=outcome.detail), None, 1
    if outcome.readback == target or (not target & online and outcome.readback is not None):
        if outcome.readback == target:
            detail = _restored(decision)
        else:
            detail = (
                f"restored the original mask {target_text}, which has no online CPU: the kernel accepted it and "
                f"gave the IRQ its default affinity, {outcome.readback_text}"
            )
        held = outcome.readback or 0
        compliant = not (held & online & ~write.reachable)
        placed = placement_after_write(tree, write, held, facts.topology) if write.irq >= 0 else None
        verdict: Status = "changed"
        if placed is not None:
            verdict, compliant = placed.status, compliant and placed.compliant
            detail = "; ".join(filter(None, [detail, placed.detail]))
        result = RowChange(verdict, detail, cpumask.format_cpulist(held), compliant=compliant)
        keep = replace(entry, written=outcome.readback_text, pending=None) if decision.partial else None
        if verdict == "failed":  # the kernel did not move it: a later restore tries again
            keep = replace(entry, written=outcome.readback_text, pending=None)
        return result, keep, 1
    holds = cpumask.format_cpulist(outcome.readback) if outcome.readback is not None else outcome.readback_text
    detail = outcome.detail or f"restoring {target_text}: the kernel accepted it but holds {holds}"
    keep = replace(entry, written=outcome.readback_text, pending=None) if outcome.readback is not None else entry
    return replace(change, status="failed", errno=None, detail=detail), keep, 1
