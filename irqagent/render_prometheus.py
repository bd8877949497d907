"""Prometheus text exposition (version 0.0.4) for node_exporter's textfile collector."""

from __future__ import annotations

from dataclasses import dataclass, field

from irqagent import __version__, cpumask
from irqagent.plan import STATUSES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Literal, Optional, Tuple

    from irqagent.report import Report

    MetricType = Literal["gauge", "counter"]  # the exposition format's TYPE line (the two this file writes)


@dataclass
class Counters:
    """Monotonic counters; the daemon keeps one across passes, a one-shot run starts at zero."""

    writes: int = 0
    failures: Dict[str, int] = field(default_factory=dict)
    passes: int = 0

    def add(self, report: Report) -> None:
        self.writes += report.writes
        self.passes += 1
        for row in report.rows:
            if row.errno:
                self.failures[row.errno] = self.failures.get(row.errno, 0) + 1


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[Tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{escape(value)}"' for key, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def family(
        self, name: str, kind: MetricType, help_text: str, samples: Iterable[Tuple[Tuple[Tuple[str, str], ...], float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")


def render_prometheus(report: Report, counters: Optional[Counters] = None, checked: Optional[float] = None) -> str:
    """``checked``: Unix time of the daemon's last periodic check (defaults to the run's end)."""
    if counters is None:
        counters = Counters()
        counters.add(report)
    out = _Writer()
    platform = report.platform
    info = (
        ("version", __version__),
        ("kernel", platform.kernel or ""),
        ("hypervisor", platform.vendor),
        ("vmm", platform.vmm or ""),
        ("apic_mode", platform.apic_mode or ""),
        ("apic_destination", platform.apic_destination),
        ("command", report.verb),
    )
    out.family("irqagent_info", "gauge", "Agent version, kernel and hypervisor (value is always 1).", [(info, 1)])
    by_status = report.by_status()
    out.family(
        "irqagent_irqs",
        "gauge",
        "IRQs by status in the last run.",
        [((("status", status),), by_status.get(status, 0)) for status in STATUSES],
    )
    out.family(
        "irqagent_noncompliant_irqs",
        "gauge",
        "IRQs whose affinity, or the CPU the kernel delivers them to, is an online CPU their controller cannot reach.",
        [((), len(report.noncompliant))],
    )
    out.family(
        "irqagent_controller_reachable_cpus",
        "gauge",
        "Online CPUs each interrupt controller can deliver to.",
        [((("chip", c.chip), ("destination", c.destination)), cpumask.count(c.usable)) for c in report.controllers],
    )
    out.family(
        "irqagent_controller_unreachable_cpus",
        "gauge",
        "Online CPUs each interrupt controller cannot deliver to.",
        [
            ((("chip", c.chip), ("destination", c.destination)), cpumask.count(c.online_unreachable))
            for c in report.controllers
        ],
    )
    out.family(
        "irqagent_ext_dest_id",
        "gauge",
        "1 when the guest uses the 15-bit extended destination ID.",
        [((), platform.ext_dest_id)],
    )
    out.family("irqagent_online_cpus", "gauge", "Online CPUs.", [((), len(report.topology.apic_ids))])
    out.family(
        "irqagent_refused_cpus",
        "gauge",
        "Configured vCPUs the kernel refused to bring online because no interrupt could reach their APIC IDs.",
        [((), len(report.refusal.refused))],
    )
    out.family(
        "irqagent_refused_cpu_slots",
        "gauge",
        "Hot-plug vCPU slots (MADT) whose APIC IDs are beyond the kernel's limit: they can never come online.",
        [((), len(report.refusal.slots))],
    )
    out.family("irqagent_writes_total", "counter", "Affinity writes made (and read back).", [((), counters.writes)])
    out.family(
        "irqagent_write_failures_total",
        "counter",
        "Affinity writes the kernel refused, by errno.",
        [((("errno", name),), count) for name, count in sorted(counters.failures.items())],
    )
    out.family("irqagent_passes_total", "counter", "Runs (daemon passes) completed.", [((), counters.passes)])
    out.family(
        "irqagent_last_run_timestamp_seconds", "gauge", "Unix time the last run finished.", [((), report.timestamp)]
    )
    out.family("irqagent_last_run_duration_seconds", "gauge", "Wall time of the last run.", [((), report.duration)])
    out.family(
        "irqagent_last_check_timestamp_seconds",
        "gauge",
        "Unix time the IRQ masks were last checked (a run, or the daemon's periodic check).",
        [((), checked if checked is not None else report.timestamp)],
    )
    return "\n".join(out.lines) + "\n"
