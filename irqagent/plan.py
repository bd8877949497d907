"""Per IRQ: what it holds, what it should hold, and the status-to-be.  Pure.

The plan is the same for ``audit``, ``apply --dry-run`` and ``apply``: report rows
(``IrqRow``, ``DefaultAffinityRow``) and, apart, the writes the executor may make
(``PlannedWrite``, one per ``would-change`` row).  The executor turns planned writes
into outcomes; the report rows after a run are the plan's rows with those outcomes
(``execute.RowChange``).
"""

from __future__ import annotations

import functools
import re

from irqagent import cpumask, delivery
from irqagent.config import first_rule
from irqagent.platform import parse_kernel_version
from irqagent.policy import Exclusion, SpreadItem, cmdline_exclusion, spread
from irqagent.records import field, frozen, replace

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, List, Literal, Mapping, Optional, Tuple

    from irqagent.config import Config, Rule
    from irqagent.controllers import Controller
    from irqagent.facts import Facts, IrqFacts
    from irqagent.journal_entry import JournalEntry

    Status = Literal[
        "ok",
        "would-change",
        "changed",
        "failed",
        "managed",
        "fixed-by-kernel",
        "ignored",
        "vanished",
        "unreachable",
        "pending",
        "stuck",
    ]

STATUSES: Tuple[Status, ...] = (  # every status a report row can have (SPEC)
    "ok",
    "would-change",
    "changed",
    "failed",
    "managed",
    "fixed-by-kernel",
    "ignored",
    "vanished",
    "unreachable",
    "pending",
    "stuck",
)
MANAGED_READ_ONLY_KERNEL = (6, 12)  # kernel/irq/proc.c: managed IRQs' affinity files are 0444 from 6.12
# Queue vectors of multi-queue drivers (virtio-blk "virtio1-req.0", nvme "nvme0q3", NIC "eth0-TxRx-2"):
# the IRQs drivers may ask the kernel to spread (managed affinity).
QUEUE_VECTOR = re.compile(r"-req\.[0-9]+|nvme[0-9]+q[0-9]+|-(?:rx|tx|TxRx|input|output)[-.]?[0-9]+", re.I)
DESTINATION_PHRASE = {
    "8bit": "8-bit destination",
    "15bit": "15-bit extended destination ID",
    "hyperv-ir": "the Hyper-V IO-APIC (APIC IDs below 255)",
    "remapped": "interrupt remapping",
    "any": "paravirtual delivery",
}  # no phrase for "none": a controller that cannot be set is fixed-by-kernel before a phrase is needed


@frozen
class IrqRow:
    """One IRQ in the report: as planned, or as the executor left it."""

    irq: int
    chip: str
    name: str
    device: Optional[str]
    destination: str
    affinity: str  # the mask as read (normalised cpulist when it parsed)
    effective: Optional[str]
    target: Optional[str]  # what apply writes (or keeps); None when nothing can be written
    status: Status
    compliant: bool
    errno: Optional[str] = None
    detail: str = ""


@frozen
class DefaultAffinityRow:
    """``proc/irq/default_smp_affinity`` in the report: the mask new IRQs start with."""

    affinity: str
    target: Optional[str]
    status: Status
    detail: str = ""
    errno: Optional[str] = None


DEFAULT_AFFINITY_FILE = "default_smp_affinity"


@frozen
class PlannedWrite:
    """One write the executor may make: ``target`` into an IRQ's affinity file, or into
    ``default_smp_affinity`` (``irq`` -1).  Never reported: the report has the rows."""

    irq: int
    file: str  # smp_affinity_list, smp_affinity or default_smp_affinity
    current: int  # the mask it holds now (as read)
    target: int
    fallback: Optional[int] = None  # the larger set to try once when the kernel has no free vector (ENOSPC)
    reachable: int = 0  # online CPUs the IRQ's controller reaches: a read-back mask complies within them
    chip: str = ""
    name: str = ""


@frozen
class Plan:
    rows: Tuple[IrqRow, ...]
    default_affinity: Optional[DefaultAffinityRow]
    exclusion: Exclusion
    writes: Tuple[PlannedWrite, ...] = ()  # one per "would-change" row, in IRQ order
    default_write: Optional[PlannedWrite] = None  # when the default affinity is "would-change"
    masks: Mapping[int, int] = field(default_factory=dict)  # every IRQ whose mask parsed: that mask

    def without_writes(self, rows: Mapping[int, IrqRow]) -> Plan:
        """The plan with these IRQs' writes dropped and their rows replaced (the daemon does not
        repeat a write the kernel refused before)."""
        if not rows:
            return self
        kept = tuple(rows.get(row.irq, row) for row in self.rows)
        writes = tuple(write for write in self.writes if write.irq not in rows)
        return Plan(kept, self.default_affinity, self.exclusion, writes, self.default_write, self.masks)


def mode_of(rule: Optional[Rule], config: Config) -> str:
    """``spread`` or ``restrict``: the IRQ's rule's mode when it sets one, else the policy's."""
    return (rule.mode if rule is not None and rule.mode else None) or config.policy.mode


def spreads(rule: Optional[Rule], config: Config) -> bool:
    """An IRQ under this rule (None: no rule) is spread: a rule that ignores the IRQ or names
    its CPUs decides instead."""
    if rule is not None and (rule.ignore or rule.cpus is not None):
        return False
    return mode_of(rule, config) == "spread"


def may_spread(config: Config) -> bool:
    """Some IRQ may be spread (then the reader reads each IRQ's NUMA node)."""
    return spreads(None, config) or any(spreads(rule, config) for rule in config.rules)


def exclusion_for(facts: Facts, config: Config) -> Exclusion:
    topology = facts.topology
    reasons: List[str] = []
    cpus = config.policy.exclude_cpus & ((1 << topology.nr_cpu_ids) - 1)
    if cpus:
        reasons.append(f"policy.exclude_cpus={cpumask.format_cpulist(config.policy.exclude_cpus)}")
    if config.policy.honour_cmdline:
        boot = cmdline_exclusion(facts.cmdline, topology.online, topology.nr_cpu_ids)
        cpus |= boot.cpus
        reasons.extend(boot.reasons)
    return Exclusion(cpus, tuple(reasons))


def make_plan(
    facts: Facts,
    config: Config,
    controllers: Mapping[str, Controller],
    journaled: Mapping[int, JournalEntry],
) -> Plan:
    """The plan; ``journaled`` is the journal's entries (IRQ -> entry) of this root and boot."""
    exclusion = exclusion_for(facts, config)
    rules = {irq.irq: _rule_for(irq, config) for irq in facts.irqs} if config.rules else {}
    version = parse_kernel_version(facts.kernel)
    context = _Context(
        facts,
        journaled,
        exclusion,
        _spread_targets(facts, config, controllers, rules, exclusion),
        managed_unknown=version is None or version < MANAGED_READ_ONLY_KERNEL,
    )
    rows: List[IrqRow] = []
    writes: List[PlannedWrite] = []
    masks: Dict[int, int] = {}
    for irq in facts.irqs:
        row, current, write = _plan_irq(irq, controllers[irq.chip], rules.get(irq.irq), context)
        rows.append(row)
        if current is not None:
            masks[irq.irq] = current
        if write is not None:
            writes.append(write)
    default, default_write = _plan_default_affinity(facts, config, controllers, exclusion)
    return Plan(tuple(rows), default, exclusion, tuple(writes), default_write, masks)


@frozen
class _Context:
    """What every IRQ's decision reads, built once per plan."""

    facts: Facts
    journaled: Mapping[int, JournalEntry]
    exclusion: Exclusion
    spread_targets: Mapping[int, int]
    managed_unknown: bool = False  # kernel < 6.12: managed IRQs' files are 0644 (KERNEL-NOTES, write outcomes)
    alias_memo: Dict[Tuple[str, int], List[str]] = field(default_factory=dict)


def _rule_for(irq: IrqFacts, config: Config) -> Optional[Rule]:
    return first_rule(config.rules, irq=irq.irq, name=irq.name, chip=irq.chip, device=irq.device, driver=irq.driver)


def _spread_targets(
    facts: Facts,
    config: Config,
    controllers: Mapping[str, Controller],
    rules: Mapping[int, Optional[Rule]],
    exclusion: Exclusion,
) -> Dict[int, int]:
    items = []
    for irq in facts.irqs:
        if not spreads(rules.get(irq.irq), config):
            continue
        controller = controllers[irq.chip]
        if not controller.settable or not irq.writable or irq.affinity_text is None:
            continue
        allowed, _ = _allowed(controller, exclusion)
        items.append(SpreadItem(irq.irq, irq.device or irq.chip or f"irq{irq.irq}", irq.node, allowed))
    return spread(items, facts.numa_nodes) if items else {}


def _allowed(controller: Controller, exclusion: Exclusion) -> Tuple[int, str]:
    """Online reachable CPUs not excluded; all online reachable ones when exclusion leaves none."""
    allowed = controller.usable & ~exclusion.cpus
    if allowed or not controller.usable:
        return allowed, ""
    return controller.usable, "every reachable CPU is excluded: ignoring the exclusion for this IRQ"


def _fmt(mask: int) -> str:
    return cpumask.format_cpulist(mask)


@functools.lru_cache(maxsize=1024)
def _are(mask: int) -> str:
    """``"CPU 3 is"`` / ``"CPUs 3-5 are"``."""
    return cpumask.cpus_phrase(mask) + (" is" if cpumask.count(mask) == 1 else " are")


def _plan_irq(
    irq: IrqFacts, controller: Controller, rule: Optional[Rule], context: _Context
) -> Tuple[IrqRow, Optional[int], Optional[PlannedWrite]]:
    """(report row, the mask as read or None, the write to make or None), built once (this runs
    for every IRQ: 16,384 on the biggest guests)."""
    current: Optional[int] = None
    affinity = irq.affinity_text or ""
    if irq.affinity_text is not None:
        try:
            current = cpumask.parse_for_file(irq.affinity_text, irq.affinity_file, context.facts.topology.nr_cpu_ids)
            affinity = _fmt(current)
        except cpumask.CpumaskError as exc:
            decision = _Decision("failed", False, f"{irq.affinity_file} is invalid: {exc}")
    if irq.vanished:
        decision = _Decision("vanished", True, "the IRQ went away while it was being read")
    elif irq.affinity_text is None:
        decision = _Decision("failed", False, irq.read_error or "affinity unreadable")
    elif current is not None:
        decision = _decide(irq, current, controller, rule, context)
    row = IrqRow(
        irq=irq.irq,
        chip=irq.chip,
        name=irq.name,
        device=irq.device,
        destination=controller.destination,
        affinity=affinity,
        effective=irq.effective_text,
        target=_fmt(decision.target) if decision.target is not None else None,
        status=decision.status,
        compliant=decision.compliant,
        detail=decision.detail,
    )
    write = None
    if decision.status == "would-change" and current is not None and decision.target is not None:
        write = PlannedWrite(
            irq.irq,
            irq.affinity_file,
            current,
            decision.target,
            decision.fallback,
            controller.usable,
            irq.chip,
            irq.name,
        )
    return row, current, write


@frozen
class _Decision:
    status: Status
    compliant: bool
    detail: str = ""
    target: Optional[int] = None
    fallback: Optional[int] = None


def _decide(irq: IrqFacts, current: int, controller: Controller, rule: Optional[Rule], context: _Context) -> _Decision:
    """The decision on the mask, then on where the kernel really delivers it (its effective
    affinity, ``irqagent.delivery``): compliance needs both on reachable CPUs."""
    decision = _decide_mask(irq, current, controller, rule, context)
    if not controller.settable:
        return decision
    effective = delivery.parse_effective(irq.effective_text, context.facts.topology.nr_cpu_ids)
    move = delivery.movement(current, effective, controller.unreachable)
    if move.state in ("settled", "unknown"):  # unknown: the mask decides (Report.effective_unknown counts them)
        return decision
    if move.state == "pending" and not current & context.facts.topology.online:
        return decision  # no online CPU in the mask: the kernel put the vector elsewhere, no move waits
    detail = "; ".join(filter(None, [decision.detail, move.detail]))
    status = decision.status
    if status == "ok":
        status = "stuck" if move.state == "stuck" else "pending"
    compliant = decision.compliant and move.state != "stuck"
    return replace(decision, status=status, compliant=compliant, detail=detail)


def _decide_mask(
    irq: IrqFacts, current: int, controller: Controller, rule: Optional[Rule], context: _Context
) -> _Decision:
    topology, exclusion = context.facts.topology, context.exclusion
    online_current = current & topology.online
    if not controller.settable:
        return _Decision("fixed-by-kernel", True, f"{irq.chip or 'this chip'} delivers per CPU or is fixed; left alone")
    unreachable_now = online_current & controller.unreachable
    compliant = not unreachable_now
    details = [controller.detail] if controller.source == "default" and controller.detail else []  # unknown chip
    if unreachable_now and controller.source == "vmm":
        details.append(f"{_are(unreachable_now)} unreachable for this {controller.chip}: {controller.detail}")
        details.extend(_alias_details(controller, unreachable_now, context.alias_memo))
    elif unreachable_now:
        details.append(f"{_are(unreachable_now)} unreachable under {DESTINATION_PHRASE[controller.destination]}")
    if rule is not None and rule.ignore:
        return _Decision("ignored", compliant, "; ".join([f"excluded by {rule.describe()}"] + details))
    if not online_current:
        # The kernel shut the IRQ down, or moved it when its CPUs went offline: not the agent's to touch.
        details.append("its mask holds no online CPU: left alone")
        return _Decision("ok" if irq.writable else "managed", True, "; ".join(details), target=current)
    if not irq.writable:
        if unreachable_now:
            reachable = controller.usable & ~exclusion.cpus or controller.usable
            details.append(
                "the kernel manages this affinity (read-only file); fix it at boot with "
                f"irqaffinity={_fmt(reachable)} or isolcpus=managed_irq,{_fmt(controller.online_unreachable)}"
            )
        return _Decision("managed", compliant, "; ".join(details))

    allowed, note = _allowed(controller, exclusion)
    excluded_now = online_current & exclusion.cpus & controller.usable
    if excluded_now and not note:
        details.append(f"{_are(excluded_now)} excluded ({', '.join(exclusion.reasons)})")
    if note:
        details.append(note)
    if rule is not None and rule.cpus is not None:
        base = rule.cpus
        details.append(f"{rule.describe()} asks for CPUs {_fmt(rule.cpus)}")
        refused = rule.cpus & ~allowed
        if refused:
            details.append(f"of which {_fmt(refused)} are unreachable, offline or excluded")
    elif irq.irq in context.spread_targets:
        base = context.spread_targets[irq.irq]
    else:
        base = online_current
        original = _journal_original(context.journaled, irq, current)
        if original is not None:
            base = original & topology.online
            if base & allowed != online_current:
                details.append(f"back towards the original mask {_fmt(original)} (journal)")
    desired = base & allowed
    if not desired:
        if not allowed:
            details.append("no online CPU is reachable by this controller: nothing safe to write")
            return _Decision("unreachable", False, "; ".join(details))
        desired = allowed
        if base:
            details.append(f"none of CPUs {_fmt(base)} is usable: using every allowed CPU")
    if desired == online_current:
        return _Decision("ok", compliant, "; ".join(details), target=current)
    if context.managed_unknown and QUEUE_VECTOR.search(irq.name):
        details.append(
            "may be kernel-managed: before 6.12 a managed queue vector's file is writable too, "
            "and only the write tells (EIO)"
        )
    fallback = allowed if allowed != desired else None
    return _Decision("would-change", compliant, "; ".join(details), target=desired, fallback=fallback)


MAX_ALIAS_LINES_PER_IRQ = 2


def _alias_details(controller: Controller, cpus: int, memo: Dict[Tuple[str, int], List[str]]) -> List[str]:
    """The alias prediction for these CPUs, or a pointer to the controller's when it is long
    (a 32,768-CPU guest has 128 alias groups: not to be repeated in every IRQ)."""
    key = (controller.chip, cpus)  # thousands of IRQs share one controller and one mask
    if key in memo:
        return memo[key]
    lines = [line for concerned, line in controller.aliases if concerned & cpus]
    if len(lines) > MAX_ALIAS_LINES_PER_IRQ:
        lines = [
            f"interrupts aimed at them would be delivered elsewhere: see the {len(lines)} alias groups "
            f"of controller {controller.chip}"
        ]
    memo[key] = lines
    return lines


def _journal_original(journaled: Mapping[int, JournalEntry], irq: IrqFacts, current: int) -> Optional[int]:
    """The journaled original when the IRQ still holds what the agent wrote (or was
    writing when it was stopped), else None."""
    entry = journaled.get(irq.irq)
    if entry is None or not entry.same_interrupt(irq.chip, irq.name) or entry.file != irq.affinity_file:
        return None
    return entry.mask(entry.original) if entry.holds_agent_mask(current) else None


def _plan_default_affinity(
    facts: Facts, config: Config, controllers: Mapping[str, Controller], exclusion: Exclusion
) -> Tuple[Optional[DefaultAffinityRow], Optional[PlannedWrite]]:
    text = facts.default_affinity_text
    if text is None or not config.policy.default_smp_affinity:
        return None, None
    topology = facts.topology
    try:
        current = cpumask.parse_hexmask(text, topology.nr_cpu_ids)
    except cpumask.CpumaskError as exc:
        return DefaultAffinityRow(affinity=text, target=None, status="failed", detail=f"invalid: {exc}"), None
    # Only the controllers new device IRQs will use (the platform's IO-APIC/MSI) narrow it: a one-off
    # exception such as QEMU's DMAR-MSI must not narrow every future (remapped) IRQ.
    unreachable = 0
    for controller in controllers.values():
        if controller.settable and controller.platform_default:
            unreachable |= controller.unreachable
    affinity = _fmt(current)
    desired = current & ~((unreachable | exclusion.cpus) & topology.online)
    if desired == current:
        return DefaultAffinityRow(affinity=affinity, target=affinity, status="ok"), None
    if not desired & topology.online:
        detail = "no online CPU would be left: left alone"
        return DefaultAffinityRow(affinity=affinity, target=None, status="unreachable", detail=detail), None
    removed = current & ~desired
    row = DefaultAffinityRow(
        affinity=affinity,
        target=_fmt(desired),
        status="would-change",
        detail=f"keeps new IRQs off {cpumask.cpus_phrase(removed & topology.online)} (unreachable or excluded)",
    )
    return row, PlannedWrite(-1, DEFAULT_AFFINITY_FILE, current, desired)
