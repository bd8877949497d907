"""The Report: one value per run.  It decides the exit status and renders to JSON.

Text and Prometheus renderers live in :mod:`irqagent.render_text` and
:mod:`irqagent.render_prometheus`; all three read only this value.
"""

from __future__ import annotations

from irqagent import __version__, cpumask
from irqagent.delivery import BootFix, boot_fix
from irqagent.errors import ExitStatus
from irqagent.policy import Exclusion
from irqagent.records import field, frozen
from irqagent.refused import Refusal

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

    from irqagent.controllers import Controller
    from irqagent.plan import DefaultAffinityRow, IrqRow
    from irqagent.platform import Platform
    from irqagent.refused import RefusedCpu
    from irqagent.topology import Topology

SCHEMA = "irqagent.report/2"
IRQ_KEYS = (
    "irq",
    "chip",
    "name",
    "device",
    "destination",
    "affinity",
    "effective",
    "target",
    "status",
    "compliant",
    "errno",
    "detail",
)


UNJUDGED = ("vanished", "fixed-by-kernel")  # statuses whose rows need no effective affinity


@frozen
class Report:
    command: str  # audit | apply | restore | run
    root: str
    platform: Platform
    topology: Topology
    controllers: Tuple[Controller, ...]
    rows: Tuple[IrqRow, ...]
    refusal: Refusal = field(default_factory=Refusal)
    apic_ids: Dict[int, int] = field(default_factory=dict)  # every CPU whose APIC ID is known
    default_affinity: Optional[DefaultAffinityRow] = None
    exclusion: Exclusion = field(default_factory=lambda: Exclusion(0, ()))
    writes: int = 0
    dry_run: bool = False
    not_restored: int = 0  # restore: journaled items left unrestored
    cmdline: str = ""  # the kernel command line (the boot fix for stuck IRQs reads it)
    timestamp: float = 0.0
    duration: float = 0.0

    # -- derived -------------------------------------------------------------

    @property
    def noncompliant(self) -> List[IrqRow]:
        return [row for row in self.rows if not row.compliant and row.status != "ignored"]

    def by_status(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def effective_unknown(self) -> int:
        """IRQs judged on their mask alone: no readable ``effective_affinity_list`` (before 4.13)."""
        return sum(1 for row in self.rows if row.effective is None and row.status not in UNJUDGED)

    def summary(self) -> Dict[str, object]:
        compliant = sum(1 for row in self.rows if row.compliant)
        return {
            "irqs": len(self.rows),
            "compliant": compliant,
            "noncompliant": len(self.rows) - compliant,
            "writes": self.writes,
            "by_status": self.by_status(),
            "effective_unknown": self.effective_unknown,
        }

    @property
    def boot_fix(self) -> Optional[BootFix]:
        """The boot parameter that places stuck IRQs on reachable CPUs (None: nothing is stuck)."""
        usable = {controller.chip: controller.usable for controller in self.controllers}
        stuck = {row.irq: usable.get(row.chip, 0) for row in self.rows if row.status == "stuck"}
        return boot_fix(stuck, self.cmdline, self.topology.nr_cpu_ids)

    @property
    def exit_status(self) -> ExitStatus:
        """The report decides: 1 when an IRQ does not comply (restore: was not restored), or
        when the kernel refused configured vCPUs because of their APIC IDs."""
        if self.command == "restore":
            return ExitStatus.NONCOMPLIANT if self.not_restored else ExitStatus.OK
        return ExitStatus.NONCOMPLIANT if self.noncompliant or self.refusal.refused else ExitStatus.OK

    @property
    def verb(self) -> str:
        return f"{self.command} --dry-run" if self.dry_run else self.command

    # -- JSON ------------------------------------------------------------------

    def to_json(self) -> Dict[str, object]:
        platform, topology = self.platform, self.topology
        cpus = []
        apic_ids = self.apic_ids or topology.apic_ids
        for cpu in cpumask.iter_cpus(topology.possible | topology.online):
            cpus.append({"cpu": cpu, "apic_id": apic_ids.get(cpu), "online": bool(topology.online >> cpu & 1)})
        document: Dict[str, object] = {
            "schema": SCHEMA,
            "version": __version__,
            "command": self.command,
            "dry_run": self.dry_run,
            "root": self.root,
            "kernel": platform.kernel,
            "hypervisor": {
                "vendor": platform.vendor,
                "vmm": platform.vmm,
                "ext_dest_id": platform.ext_dest_id,
                "ext_dest_id_offered": platform.ext_dest_id_offered,
                "source": platform.source,
            },
            "apic": {
                "mode": platform.apic_mode,
                "mode_source": platform.mode_source,
                "limit": platform.limit,
                "destination": platform.apic_destination,
                "remapped": platform.remapped,
                "notes": list(platform.notes),
            },
            "excluded": {"cpus": cpumask.format_cpulist(self.exclusion.cpus), "reasons": list(self.exclusion.reasons)},
            "cpus": cpus,
            "refused_cpus": [refused_json(entry) for entry in self.refusal.cpus],
            "refused_fix": self.refusal.fix,
            "stuck_fix": boot_fix_json(self.boot_fix),
            "controllers": [controller_json(c) for c in self.controllers],
            "irqs": [irq_json(row) for row in self.rows],
            "default_smp_affinity": default_json(self.default_affinity),
            "summary": self.summary(),
        }
        if self.command == "restore":
            document["summary"]["not_restored"] = self.not_restored  # type: ignore[index]
        return document


def controller_json(controller: Controller) -> Dict[str, object]:
    return {
        "chip": controller.chip,
        "destination": controller.destination,
        "source": controller.source,
        "reachable": cpumask.format_cpulist(controller.reachable),
        "unreachable": cpumask.format_cpulist(controller.unreachable),
        "reachable_apic_ids": controller.reachable_apic_text,
        "irqs": controller.irqs,
        "detail": "; ".join(filter(None, [controller.detail, *(line for _, line in controller.aliases)])),
    }


def refused_json(entry: RefusedCpu) -> Dict[str, object]:
    return {"cpu": entry.cpu, "apic_id": entry.apic_id, "online_capable": entry.online_capable, "reason": entry.reason}


def irq_json(row: IrqRow) -> Dict[str, object]:
    return {key: getattr(row, key) for key in IRQ_KEYS}


def boot_fix_json(fix: Optional[BootFix]) -> Optional[Dict[str, object]]:
    if fix is None:
        return None
    return {
        "irqs": list(fix.irqs),
        "cpus": cpumask.format_cpulist(fix.cpus),
        "parameter": fix.parameter,
        "cmdline_has": fix.present,
        "covered": fix.covered,
        "text": fix.text,
    }


def default_json(row: Optional[DefaultAffinityRow]) -> Optional[Dict[str, object]]:
    if row is None:
        return None
    return {
        "affinity": row.affinity,
        "target": row.target,
        "status": row.status,
        "errno": row.errno,
        "detail": row.detail,
    }
