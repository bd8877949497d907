"""One pipeline for every command: read -> platform -> controllers -> plan -> (execute) -> Report."""

from __future__ import annotations

import os
import sys
import time

from irqagent.config import rules_need_driver
from irqagent.controllers import build_controllers, chip_counts
from irqagent.errors import StateError
from irqagent.journal import EMPTY, fresh, scope_of
from irqagent.plan import make_plan, may_spread
from irqagent.platform import decide_platform
from irqagent.records import frozen, replace
from irqagent.refused import decide_refusals
from irqagent.report import Report
from irqagent.topology import known_apic_ids, offline_cpus

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # the executor is imported by the commands that write, when they run
    from typing import Callable, Dict, Optional, TextIO

    from irqagent.config import Config
    from irqagent.controllers import Controller
    from irqagent.execute import Execution
    from irqagent.facts import Facts
    from irqagent.journal import Journal, JournalStore, Relation, Scope
    from irqagent.kernel import KernelTree
    from irqagent.plan import IrqRow, Plan
    from irqagent.platform import Platform
    from irqagent.refused import Refusal


@frozen
class Model:
    facts: Facts
    platform: Platform
    controllers: Dict[str, Controller]
    plan: Plan
    refusal: Refusal
    apic_ids: Dict[int, int]  # every CPU whose APIC ID is known (cpuinfo, then the MADT)


def read_facts(tree: KernelTree, config: Config) -> Facts:
    return tree.collect(want_node=may_spread(config), want_driver=rules_need_driver(config.rules))


def build_model(facts: Facts, config: Config, journal: Journal) -> Model:
    """The pure part: everything the agent concludes from the facts."""
    chips = chip_counts(irq.chip for irq in facts.irqs)
    files = facts.platform_files
    offline = offline_cpus(facts.topology, files.madt)
    platform = decide_platform(facts, config, chips, offline)
    apic_ids = known_apic_ids(facts.topology, offline)
    controllers = build_controllers(chips, platform, apic_ids, facts.topology.online, config)
    plan = make_plan(facts, config, controllers, journal.entries)
    refusal = decide_refusals(
        facts.topology, offline, files.madt is not None, files.madt_note, platform, facts.cmdline, files.acpi_tables
    )
    return Model(facts, platform, controllers, plan, refusal, apic_ids)


def _report(
    command: str,
    model: Model,
    started: float,
    outcome: Optional[Execution] = None,
    dry_run: bool = False,
    not_restored: int = 0,
) -> Report:
    """The Report of a run: the plan as it stands, or what the executor made of it."""
    return Report(
        command=command,
        root=model.facts.root,
        platform=model.platform,
        topology=model.facts.topology,
        controllers=tuple(model.controllers.values()),
        rows=tuple(outcome.rows) if outcome else model.plan.rows,
        refusal=model.refusal,
        apic_ids=model.apic_ids,
        default_affinity=outcome.default_affinity if outcome else model.plan.default_affinity,
        writes=outcome.writes if outcome else 0,
        exclusion=model.plan.exclusion,
        timestamp=time.time(),
        duration=time.monotonic() - started,
        dry_run=dry_run,
        not_restored=not_restored,
        cmdline=model.facts.cmdline,
    )


def peek_journal(store: Optional[JournalStore], scope: Scope, warn: TextIO = sys.stderr) -> Journal:
    """The journal for read-only commands: a damaged one, or one of another root or an
    earlier boot, is a warning, not a stop (and not used)."""
    if store is None:
        return EMPTY
    try:
        journal = store.load()
    except StateError as exc:
        print(f"irqagent: warning: {exc}", file=warn)
        return EMPTY
    relation = journal.relation(scope)
    if relation != "current":
        print(f"irqagent: warning: {_not_used(store, journal, relation)}", file=warn)
        return EMPTY
    return journal


def _not_used(store: JournalStore, journal: Journal, relation: Relation) -> str:
    if relation == "foreign":
        return f"journal {store.path} holds {journal.describe()}, not this root: not used"
    return f"journal {store.path} holds {journal.describe()} from an earlier boot (boot ID {journal.boot_id}): history"


def usable_journal(
    store: JournalStore, journal: Journal, scope: Scope, warn: Optional[Callable[[str], None]] = None
) -> Journal:
    """The journal ``apply`` builds on.  Another root's is refused (exit 2): the run
    would overwrite it.  An earlier boot's is history: dropped (the first save of this
    run, which journals this boot's originals, replaces it)."""
    relation = journal.relation(scope)
    if relation == "foreign":
        raise StateError(
            f"{_not_used(store, journal, relation)}; refusing to replace it: use another --state-dir "
            f"(or run irqagent restore --root {journal.root} with this one first)"
        )
    if relation == "stale":
        if warn is not None:
            warn(f"{_not_used(store, journal, relation)}: dropped")
        return fresh(scope)
    return replace(journal, root=scope.root, boot_id=scope.boot_id)


def audit(
    tree: KernelTree,
    config: Config,
    store: Optional[JournalStore] = None,
    command: str = "audit",
    warn: TextIO = sys.stderr,
) -> Report:
    """Read-only: the plan as a report (``audit`` and ``apply --dry-run``)."""
    started = time.monotonic()
    model = build_model(read_facts(tree, config), config, peek_journal(store, scope_of(tree), warn))
    return _report(command, model, started, dry_run=command == "apply")


def apply(
    tree: KernelTree,
    config: Config,
    store: JournalStore,
    refused: Optional[Callable[[IrqRow], Optional[IrqRow]]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> Report:
    """Plan, journal, write, verify.  The caller holds the state lock.

    ``refused(row)`` (the daemon's memory) returns the earlier outcome of a write the
    kernel refused; such rows are reported again instead of written again.  ``warn``
    receives notices (an earlier boot's journal dropped).
    """
    started = time.monotonic()
    loaded = store.load()
    journal = usable_journal(store, loaded, scope_of(tree), warn)
    model = build_model(read_facts(tree, config), config, journal)
    plan = model.plan
    if refused is not None:
        plan = plan.without_writes(_not_again(plan, refused))
    from irqagent.execute import UnrecordedWrites, apply_plan

    _remove_stray_temps(tree, store, model.facts)
    try:
        execution = apply_plan(plan, tree, store, journal, model.facts.topology)
    except UnrecordedWrites as exc:
        exc.report = _report("apply", model, started, exc.execution)
        raise
    if journal.empty and not loaded.empty and not _writes_planned(plan):
        store.save(journal)  # an earlier boot's history, and nothing of this boot to journal
    return _report("apply", model, started, execution)


def _writes_planned(plan: Plan) -> bool:
    return bool(plan.writes) or plan.default_write is not None


def _remove_stray_temps(tree: KernelTree, store: JournalStore, facts: Facts) -> None:
    """Temp files a killed run left: the journal's, and (file trees only) the masks'.
    Only under the state lock: another writer's temp files are not strays."""
    if not store.state.locked:
        return
    store.state.remove_stray_temps()
    if os.path.realpath(tree.root) != "/":
        tree.remove_stray_temps([irq.irq for irq in facts.irqs])


def _not_again(plan: Plan, refused: Callable[[IrqRow], Optional[IrqRow]]) -> Dict[int, IrqRow]:
    """The rows of planned writes the kernel refused before, with that earlier outcome."""
    rows: Dict[int, IrqRow] = {}
    planned = {write.irq for write in plan.writes}
    for row in plan.rows:
        earlier = refused(row) if row.irq in planned else None
        if earlier is not None:
            detail = f"{earlier.detail}; refused before: not retried until the mask, target or config changes"
            rows[row.irq] = replace(row, status=earlier.status, errno=earlier.errno, detail=detail)
    return rows


def restore_all(tree: KernelTree, config: Config, store: JournalStore, force: bool, dry_run: bool = False) -> Report:
    """``restore`` (the caller holds the state lock unless ``dry_run``)."""
    started = time.monotonic()
    journal = store.load()
    model = build_model(read_facts(tree, config), config, EMPTY)
    from irqagent.restore import restore

    if not dry_run:
        _remove_stray_temps(tree, store, model.facts)
    result = restore(model.facts, model.plan, model.controllers, tree, store, journal, scope_of(tree), force, dry_run)
    return _report("restore", model, started, result, not_restored=result.not_restored, dry_run=dry_run)
