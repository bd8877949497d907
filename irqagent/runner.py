"""One pipeline for every command: read -> platform -> controllers -> plan -> (execute) -> Report."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Dict, Optional, TextIO

from irqagent.config import Config, rules_need_driver
from irqagent.controllers import Controller, build_controllers, chip_counts
from irqagent.errors import StateError
from irqagent.facts import Facts
from irqagent.journal import EMPTY, Journal, JournalStore
from irqagent.kernel import KernelTree
from irqagent.plan import IrqRow, Plan, make_plan
from irqagent.platform import Platform, decide_platform
from irqagent.report import Report

if TYPE_CHECKING:  # the executor is imported by the commands that write, when they run
    from irqagent.execute import Execution


@dataclass(frozen=True)
class Model:
    facts: Facts
    platform: Platform
    controllers: Dict[str, Controller]
    plan: Plan


def read_facts(tree: KernelTree, config: Config) -> Facts:
    wants_spread = config.policy.mode == "spread" or any(rule.mode == "spread" for rule in config.rules)
    return tree.collect(want_node=wants_spread, want_driver=rules_need_driver(config.rules))


def build_model(facts: Facts, config: Config, journal: Journal) -> Model:
    """The pure part: everything the agent concludes from the facts."""
    chips = chip_counts(irq.chip for irq in facts.irqs)
    platform = decide_platform(facts, config, chips)
    controllers = build_controllers(chips, platform, facts.topology, config)
    plan = make_plan(facts, config, controllers, journal)
    return Model(facts, platform, controllers, plan)


def _report(command: str, model: Model, started: float, outcome: Optional[Execution] = None, **kwargs) -> Report:
    """The Report of a run: the plan as it stands, or what the executor made of it."""
    return Report(
        command=command,
        root=model.facts.root,
        platform=model.platform,
        topology=model.facts.topology,
        controllers=tuple(model.controllers.values()),
        rows=tuple(outcome.rows) if outcome else model.plan.rows,
        default_affinity=outcome.default_affinity if outcome else model.plan.default_affinity,
        writes=outcome.writes if outcome else 0,
        exclusion=model.plan.exclusion,
        timestamp=time.time(),
        duration=time.monotonic() - started,
        **kwargs,
    )


def peek_journal(store: Optional[JournalStore], warn: TextIO = sys.stderr) -> Journal:
    """The journal for read-only commands: a damaged one is a warning, not a stop."""
    if store is None:
        return EMPTY
    try:
        return store.load()
    except StateError as exc:
        print(f"irqagent: warning: {exc}", file=warn)
        return EMPTY


def audit(
    tree: KernelTree,
    config: Config,
    store: Optional[JournalStore] = None,
    command: str = "audit",
    warn: TextIO = sys.stderr,
) -> Report:
    """Read-only: the plan as a report (``audit`` and ``apply --dry-run``)."""
    started = time.monotonic()
    model = build_model(read_facts(tree, config), config, peek_journal(store, warn))
    return _report(command, model, started, dry_run=command == "apply")


def apply(
    tree: KernelTree,
    config: Config,
    store: JournalStore,
    refused: Optional[Callable[[IrqRow], Optional[IrqRow]]] = None,
) -> Report:
    """Plan, journal, write, verify.  The caller holds the state lock.

    ``refused(row)`` (the daemon's memory) returns the earlier outcome of a write the
    kernel refused; such rows are reported again instead of written again.
    """
    started = time.monotonic()
    journal = store.load()
    model = build_model(read_facts(tree, config), config, journal)
    plan = model.plan
    if refused is not None:
        plan = replace(plan, rows=tuple(_not_again(row, refused) for row in plan.rows))
    from irqagent.execute import apply_plan

    execution = apply_plan(plan, tree, store, journal, model.facts.topology)
    return _report("apply", model, started, execution)


def _not_again(row: IrqRow, refused: Callable[[IrqRow], Optional[IrqRow]]) -> IrqRow:
    if row.status != "would-change":
        return row
    earlier = refused(row)
    if earlier is None:
        return row
    return replace(
        row,
        status=earlier.status,
        errno=earlier.errno,
        detail=f"{earlier.detail}; refused before: not retried until the mask, target or config changes",
    )


def restore_all(tree: KernelTree, config: Config, store: JournalStore, force: bool) -> Report:
    started = time.monotonic()
    journal = store.load()
    model = build_model(read_facts(tree, config), config, EMPTY)
    from irqagent.restore import restore

    result = restore(model.facts, list(model.plan.rows), tree, store, journal, force)
    return _report("restore", model, started, result, not_restored=result.not_restored)
