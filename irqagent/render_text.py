"""The text report: a header block, one line per IRQ needing attention, a summary.

Fits an 80-column terminal: long cpulists and names are elided in the middle
(never in JSON).  Colour only when asked (a TTY without ``NO_COLOR``).
"""

from __future__ import annotations

import textwrap

from irqagent import __version__, cpumask
from irqagent.refused import group_ranges

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import List

    from irqagent.refused import Refusal
    from irqagent.report import Report

WIDTH = 80
STATUS_COLOURS = {
    "changed": "32",  # green
    "would-change": "33",  # yellow
    "failed": "31",  # red
    "unreachable": "31",
    "managed": "35",  # magenta
    "vanished": "36",  # cyan
    "pending": "33",
    "stuck": "31",
}
MOVING = ("pending", "stuck")  # statuses whose row shows where the vector still is


def elide(text: str, width: int) -> str:
    """``"0-3,5,7,...,299"``: keep both ends, mark the cut with ``..``."""
    if len(text) <= width:
        return text
    if width <= 4:
        return text[:width]
    head = (width - 2 + 1) // 2
    tail = width - 2 - head
    return text[:head] + ".." + (text[-tail:] if tail else "")


def _cpus(mask: int) -> str:
    return cpumask.format_cpulist(mask) or "-"


def summary_line(report: Report) -> str:
    summary = report.summary()
    statuses = ", ".join(f"{status} {count}" for status, count in report.by_status().items())
    line = (
        f"{report.verb}: {summary['irqs']} IRQs, {summary['compliant']} compliant, "
        f"{summary['noncompliant']} non-compliant, {summary['writes']} writes"
    )
    if report.command == "restore":
        line += f", {report.not_restored} not restored"
    if report.refusal.refused:
        line += f", {len(report.refusal.refused)} vCPUs refused"
    return line + (f" ({statuses})" if statuses else "")


MAX_REFUSED_LINES = 12


def refused_section(refusal: Refusal) -> List[str]:
    """The vCPUs the kernel refused, grouped into ranges ("CPUs 255-287, APIC IDs 0xff-0x11f")."""
    if not refusal.cpus:
        return []
    counts = []
    if refusal.refused:
        counts.append(f"{len(refusal.refused)} vCPUs refused")
    if refusal.slots:
        counts.append(f"{len(refusal.slots)} hot-plug slots that can never come online")
    unknown = len(refusal.cpus) - len(refusal.refused) - len(refusal.slots)
    if unknown:
        counts.append(f"{unknown} present CPUs offline for an unknown reason")
    lines = ["", f"  REFUSED VCPUS: {', '.join(counts)}"]
    runs = group_ranges(refusal.cpus)
    for first_cpu, last_cpu, first_apic, last_apic, head in runs[:MAX_REFUSED_LINES]:
        if first_cpu is None:
            who = "never registered"
        elif first_cpu == last_cpu:
            who = f"CPU {first_cpu}"
        else:
            who = f"CPUs {first_cpu}-{last_cpu}"
        if first_apic >= 0:
            apics = f"{first_apic:#x}" if first_apic == last_apic else f"{first_apic:#x}-{last_apic:#x}"
            who = f"{who}, APIC ID{'s' if first_apic != last_apic else ''} {apics}"
            reason = head.reason.replace(f"APIC ID {head.apic_id} >", "APIC ID >")
        else:
            reason = head.reason
        for number, chunk in enumerate(textwrap.wrap(f"{who}: {reason}", WIDTH - 6, break_on_hyphens=False)):
            lines.append(f"    {'' if number == 0 else '  '}{chunk}")
    if len(runs) > MAX_REFUSED_LINES:
        lines.append(f"    ... {len(runs) - MAX_REFUSED_LINES} more groups (--format json lists every vCPU)")
    if refusal.fix:
        for number, chunk in enumerate(textwrap.wrap(f"fix: {refusal.fix}", WIDTH - 6, break_on_hyphens=False)):
            lines.append(f"    {'' if number == 0 else '     '}{chunk}")
    return lines


def stuck_section(report: Report) -> List[str]:
    """IRQs whose move the kernel cannot complete, and the boot parameter that avoids them."""
    fix = report.boot_fix
    if fix is None:
        return []
    irqs = ", ".join(str(irq) for irq in fix.irqs[:MAX_REFUSED_LINES])
    more = f" and {len(fix.irqs) - MAX_REFUSED_LINES} more" if len(fix.irqs) > MAX_REFUSED_LINES else ""
    lines = ["", f"  STUCK IRQS: {len(fix.irqs)} on CPUs their controller cannot reach (IRQ {irqs}{more})"]
    for number, chunk in enumerate(textwrap.wrap(f"fix: {fix.text}", WIDTH - 6, break_on_hyphens=False)):
        lines.append(f"    {'' if number == 0 else '     '}{chunk}")
    return lines


def _wrap_summary(line: str) -> List[str]:
    """The summary in 80 columns: the counts, then the status list on its own line(s) when needed."""
    if len(line) <= WIDTH:
        return [line]
    head, sep, statuses = line.partition(" (")
    wrapped = textwrap.wrap(head, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    if sep:
        wrapped += textwrap.wrap("(" + statuses, WIDTH, initial_indent="  ", subsequent_indent="   ")
    return wrapped


def render_text(report: Report, verbose: bool = False, quiet: bool = False, colour: bool = False) -> str:
    if quiet:
        return summary_line(report) + "\n"
    lines: List[str] = []
    platform, topology = report.platform, report.topology
    title = f"irqagent {__version__} {report.verb} of "
    lines.append(title + elide(report.root, WIDTH - len(title)))
    ext = "in use" if platform.ext_dest_id else "not in use"
    offered = {True: "offered", False: "not offered", None: "no CPUID answer"}[platform.ext_dest_id_offered]
    vmm = f"{platform.vmm} ({platform.vmm_evidence})" if platform.vmm else "implementation unknown"
    mode = f"{platform.apic_mode} (from {platform.mode_source})" if platform.apic_mode else "mode unknown"
    limit = f", limit {platform.limit}" if platform.limit is not None else ""
    header = [
        ("hypervisor", f"{platform.vendor} (from {platform.vendor_source}), {vmm}"),
        (
            "destination",
            f"{platform.apic_destination} IO-APIC/MSI (from {platform.source}); extended destination ID {ext} "
            f"(CPUID: {offered})",
        ),
        ("kernel", platform.kernel or "unknown"),
        (
            "APIC",
            f"{mode}{limit}; {len(topology.apic_ids)} online CPUs of {cpumask.count(topology.possible)}"
            f" possible, APIC IDs up to {topology.max_apic_id}"
            + (", interrupt remapping" if platform.remapped else ""),
        ),
    ]
    if report.exclusion.cpus:
        header.append(("excluded", f"CPUs {_cpus(report.exclusion.cpus)} ({', '.join(report.exclusion.reasons)})"))
    if report.default_affinity is not None:
        d = report.default_affinity
        text = f"{d.affinity} {d.status}"
        if d.target and d.target != d.affinity:
            text = f"{d.affinity} -> {d.target} {d.status}"
        header.append(("default", f"default_smp_affinity {text}"))
    for note in platform.notes if verbose else ():
        header.append(("note", note))
    for key, value in header:
        for number, chunk in enumerate(textwrap.wrap(value, WIDTH - 14) or [""]):
            lines.append(f"  {key if number == 0 else '':<11} {chunk}")
    lines.append("")
    lines.append(f"  {'CONTROLLER':<22} {'DEST':<9} {'SOURCE':<8} {'REACHABLE':<14} {'UNREACHABLE':<14} IRQS")
    for c in report.controllers:
        reach = _cpus(c.reachable) if c.settable else "-"
        lines.append(
            f"  {elide(c.chip or '(none)', 22):<22} {c.destination:<9} {c.source:<8} "
            f"{elide(reach, 14):<14} {elide(_cpus(c.unreachable), 14):<14} {c.irqs:>4}"
        )
        for _, alias in c.aliases if verbose else c.aliases[:3]:
            for chunk in textwrap.wrap(alias, WIDTH - 6):
                lines.append(f"      {chunk}")
        if len(c.aliases) > 3 and not verbose:
            lines.append(f"      ... {len(c.aliases) - 3} more alias groups (-v)")
    lines.extend(refused_section(report.refusal))
    shown = [row for row in report.rows if verbose or row.status != "ok"]
    if shown:
        lines.append("")
        lines.append(f"  {'IRQ':>5} {'CHIP':<21} {'NAME':<15} {'AFFINITY -> TARGET':<19} STATUS")
        for row in shown:
            change = elide(row.affinity or "?", 9)
            if row.target is not None and row.target != row.affinity:
                change = f"{change} -> {elide(row.target, 9)}"
            status = row.status + (f" {row.errno}" if row.errno else "")
            if row.status in MOVING and row.effective:
                status += f" (on {elide(row.effective, 9)})"
            if colour and row.status in STATUS_COLOURS:
                status = f"\x1b[{STATUS_COLOURS[row.status]}m{status}\x1b[0m"
            lines.append(
                f"  {row.irq:>5} {elide(row.chip or '-', 21):<21} {elide(row.name or '-', 15):<15} "
                f"{change:<19} {status}"
            )
            if verbose and row.detail:
                for chunk in textwrap.wrap(row.detail, WIDTH - 8):
                    lines.append(f"        {chunk}")
        if not verbose and any(row.detail for row in shown):
            lines.append("  (-v explains each IRQ; --format json has every detail)")
    lines.extend(stuck_section(report))
    if report.effective_unknown:
        lines.append("")
        lines.append(
            f"  {report.effective_unknown} IRQs have no readable effective_affinity_list: judged on their mask alone"
        )
    lines.append("")
    lines.extend(_wrap_summary(summary_line(report)))
    return "\n".join(lines) + "\n"
