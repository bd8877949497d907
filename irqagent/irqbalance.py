"""Living beside irqbalance: the banned-CPU line it needs, and a warning when both spread."""

from __future__ import annotations

from typing import Optional

from irqagent import cpumask
from irqagent.config import Config
from irqagent.report import Report


def banned_cpus(report: Report) -> int:
    """Online CPUs that some settable controller cannot reach, plus excluded online CPUs."""
    banned = report.exclusion.cpus & report.topology.online
    for controller in report.controllers:
        if controller.settable:
            banned |= controller.online_unreachable
    return banned


def banned_line(report: Report) -> str:
    """The line for /etc/default/irqbalance (or /etc/sysconfig/irqbalance)."""
    return f"IRQBALANCE_BANNED_CPULIST={cpumask.format_cpulist(banned_cpus(report))}\n"


def irqbalance_running() -> bool:
    import psutil

    for process in psutil.process_iter(["name"]):
        if process.info.get("name") == "irqbalance":
            return True
    return False


def irqbalance_warning(config: Config, root: str) -> Optional[str]:
    """A warning when irqbalance runs on this machine and the policy spreads IRQs too."""
    spreads = config.policy.mode == "spread" or any(rule.mode == "spread" for rule in config.rules)
    if root != "/" or not spreads:
        return None
    if not irqbalance_running():
        return None
    return (
        'irqbalance is running and policy.mode is "spread": both will move IRQs; stop irqbalance or use '
        'mode "restrict" with IRQBALANCE_BANNED_CPULIST (irqagent audit --format irqbalance-banned)'
    )
