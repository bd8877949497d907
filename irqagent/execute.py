"""Turn ``would-change`` rows into verified writes: journal first, write, read back.

Order of events for one ``apply``:

1. every IRQ about to be written gets its original mask recorded, and the
   journal is replaced atomically and durably -- before the first write;
2. each IRQ is written with one ``write()`` and read back; the kernel's errno
   decides the status (the failure matrix is in README.md);
3. the journal is replaced again with what each IRQ really holds, dropping the
   entries of IRQs that were not changed after all.

A kill at any point leaves a journal that names every IRQ the agent may have
written, with its original: ``irqagent restore`` can always undo.
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from irqagent import cpumask
from irqagent.errors import IrqagentError
from irqagent.journal import Journal, JournalEntry, JournalStore, new_entry
from irqagent.kernel import DEFAULT_AFFINITY, PROC_IRQ, KernelTree, describe_oserror
from irqagent.plan import DefaultAffinityRow, IrqRow, Plan
from irqagent.topology import Topology

MANAGED_ERRNOS = {errno_mod.EIO, errno_mod.EPERM}
FATAL_ERRNOS = {errno_mod.EROFS, errno_mod.EACCES}
DEFAULT_AFFINITY_FILE = "default_smp_affinity"


def errno_name(exc: OSError) -> str:
    return errno_mod.errorcode.get(exc.errno or 0, f"errno {exc.errno}")


class FatalWriteError(IrqagentError):
    """/proc is read-only or writes are not permitted: nothing can be changed."""


@dataclass(frozen=True)
class WriteOutcome:
    ok: bool  # the write was accepted
    errno: Optional[str] = None
    readback: Optional[int] = None  # mask read back after an accepted write
    readback_text: Optional[str] = None
    vanished: bool = False
    detail: str = ""


def write_and_verify(tree: KernelTree, irq: int, mask: int, filename: str, nr_cpu_ids: int) -> WriteOutcome:
    """One write of ``mask`` and one read back.  Raises FatalWriteError on EROFS/EACCES."""
    text = cpumask.format_for_file(mask, filename, nr_cpu_ids)
    where = f"{tree.path(PROC_IRQ)}/{irq}/{filename}"
    try:
        tree.write_affinity(irq, text, filename)
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            raise FatalWriteError(f"cannot write {where}: {describe_oserror(exc)}") from None
        vanished = exc.errno == errno_mod.ENOENT
        return WriteOutcome(
            False, errno_name(exc), vanished=vanished, detail=f"writing {text} failed: {describe_oserror(exc)}"
        )
    try:
        raw, _ = tree.read_affinity(irq, filename)
    except OSError as exc:
        vanished = exc.errno == errno_mod.ENOENT
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
    """Write every ``would-change`` row (and the default affinity); return the results."""
    nr_cpu_ids = topology.nr_cpu_ids
    pending = [row for row in plan.rows if row.status == "would-change"]
    default = (
        plan.default_affinity if plan.default_affinity and plan.default_affinity.status == "would-change" else None
    )
    if not pending and default is None:
        return Execution(list(plan.rows), plan.default_affinity, 0)

    # 1. Journal every original before the first write.
    before = dict(journal.entries)
    intended: Dict[int, JournalEntry] = dict(before)
    for row in pending:
        intended[row.irq] = _journal_entry(
            row.irq,
            row.current or 0,
            row.target_mask or 0,
            row.affinity_file,
            row.chip,
            row.name,
            before.get(row.irq),
            nr_cpu_ids,
        )
    default_before = journal.default_affinity
    default_intended = default_before
    if default is not None:
        default_intended = _journal_entry(
            -1,
            default.current or 0,
            default.target_mask or 0,
            DEFAULT_AFFINITY_FILE,
            "",
            "",
            default_before,
            nr_cpu_ids,
        )
    store.save(Journal(intended, default_intended))

    # 2. Write and verify, one IRQ at a time; one failure never stops the others.
    results: Dict[int, IrqRow] = {}
    final: Dict[int, JournalEntry] = dict(before)
    writes = 0
    default_row = plan.default_affinity
    try:
        for row in pending:
            result, entry, wrote = _execute_row(row, tree, intended[row.irq], topology)
            results[row.irq] = result
            writes += wrote
            if entry is not None:
                final[row.irq] = entry
        if default is not None:
            default_row, default_intended, wrote = _execute_default(
                default, tree, default_intended, default_before, nr_cpu_ids
            )
            writes += wrote
        else:
            default_intended = default_before
    except FatalWriteError:
        # 3'. Keep only what was really changed, then stop the run.
        store.save(Journal(final, default_before))
        raise
    # 3. Record what each IRQ really holds now.
    store.save(Journal(final, default_intended))
    rows = [results.get(row.irq, row) for row in plan.rows]
    return Execution(rows, default_row, writes)


def _journal_entry(
    irq: int,
    current: int,
    target: int,
    filename: str,
    chip: str,
    name: str,
    existing: Optional[JournalEntry],
    nr_cpu_ids: int,
) -> JournalEntry:
    """The entry to journal before writing ``target``: the existing one when the mask still
    holds what the agent wrote (its original stays), else a new one with ``current``."""
    target_text = cpumask.format_for_file(target, filename, nr_cpu_ids)
    if existing is not None and existing.same_interrupt(chip, name) and existing.file == filename:
        try:
            still_ours = cpumask.parse_for_file(existing.written, existing.file, nr_cpu_ids) == current
        except cpumask.CpumaskError:
            still_ours = False
        if still_ours:
            return replace(existing, written=target_text)
    original = cpumask.format_for_file(current, filename, nr_cpu_ids)
    return new_entry(irq, original, target_text, chip, name, filename)


def _execute_row(
    row: IrqRow, tree: KernelTree, entry: JournalEntry, topology: Topology
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
        outcome = write_and_verify(tree, row.irq, target, row.affinity_file, nr_cpu_ids)
    errno_text = outcome.errno or first_errno
    if not outcome.ok:
        details.append(outcome.detail)
        if outcome.vanished:
            return (
                replace(
                    row, status="vanished", errno=errno_text, target=None, compliant=True, detail="; ".join(details)
                ),
                None,
                0,
            )
        if outcome.errno in ("EIO", "EPERM"):
            details.append("the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)")
            return replace(row, status="managed", errno=errno_text, detail="; ".join(details)), None, 0
        if outcome.errno == "EBUSY":
            details.append("the previous move of this vector is still in flight: retrying on the next pass")
        return replace(row, status="failed", errno=errno_text, detail="; ".join(details)), None, 0
    kept = replace(entry, written=cpumask.format_for_file(target, row.affinity_file, nr_cpu_ids))
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
            kept,
            1,
        )
    if outcome.vanished:
        details.append(outcome.detail)
        return replace(row, status="vanished", errno=errno_text, compliant=True, detail="; ".join(details)), None, 1
    held = cpumask.format_cpulist(outcome.readback or 0)
    details.append(outcome.detail or f"the kernel accepted {cpumask.format_cpulist(target)} but holds {held}")
    if outcome.readback is None:
        return replace(row, status="failed", errno=errno_text, compliant=False, detail="; ".join(details)), kept, 1
    compliant = not (outcome.readback & topology.online & ~row.reachable)
    kept = replace(entry, written=outcome.readback_text or entry.written)
    return replace(row, status="failed", errno=errno_text, compliant=compliant, detail="; ".join(details)), kept, 1


def _execute_default(row, tree: KernelTree, entry: JournalEntry, previous: Optional[JournalEntry], nr_cpu_ids: int):
    text = cpumask.format_for_file(row.target_mask, DEFAULT_AFFINITY_FILE, nr_cpu_ids)
    try:
        tree.write_default_affinity(text)
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            raise FatalWriteError(f"cannot write {tree.path(DEFAULT_AFFINITY)}: {describe_oserror(exc)}") from None
        return (
            replace(
                row, status="failed", errno=errno_name(exc), detail=f"writing {text} failed: {describe_oserror(exc)}"
            ),
            previous,
            0,
        )
    readback_text = (tree.read_optional(DEFAULT_AFFINITY) or "").strip()
    try:
        readback = cpumask.parse_hexmask(readback_text, nr_cpu_ids)
    except cpumask.CpumaskError:
        readback = None
    if readback == row.target_mask:
        return replace(row, status="changed"), entry, 1
    kept = replace(entry, written=readback_text) if readback is not None else entry
    return replace(row, status="failed", detail=f"wrote {text} but it reads back {readback_text!r}"), kept, 1
