"""Living beside irqbalance: the banned-CPU line it needs, and a warning when both spread."""

from __future__ import annotations

from irqagent import cpumask

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Optional

    from irqagent.config import Config
    from irqagent.report import Report


def banned_cpus(report: Report) -> int:
    """Online CPUs the platform's own IO-APIC/MSI cannot reach, plus excluded online CPUs.

    A hypervisor's one-off exception (QEMU's DMAR-MSI, Cloud Hypervisor's IO-APIC) must not
    keep irqbalance off CPUs every other IRQ can use: its IRQs are banned from irqbalance
    instead (:func:`banned_irqs`), and the agent keeps them on their reachable CPUs."""
    banned = report.exclusion.cpus & report.topology.online
    for controller in report.controllers:
        if controller.settable and controller.platform_default:
            banned |= controller.online_unreachable
    return banned


def banned_irqs(report: Report) -> int:
    """IRQs of controllers narrower than the platform (source ``vmm``) that cannot reach every
    online CPU: irqbalance must leave them alone (``--banirq``)."""
    chips = {c.chip for c in report.controllers if c.settable and c.source == "vmm" and c.online_unreachable}
    return cpumask.mask_of(row.irq for row in report.rows if row.chip in chips)


def banned_line(report: Report) -> str:
    """The lines for /etc/default/irqbalance (or /etc/sysconfig/irqbalance)."""
    text = f"IRQBALANCE_BANNED_CPULIST={cpumask.format_cpulist(banned_cpus(report))}\n"
    irqs = banned_irqs(report)
    if irqs:
        text += 'IRQBALANCE_ARGS="' + " ".join(f"--banirq={irq}" for irq in cpumask.iter_cpus(irqs)) + '"\n'
    return text


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
