"""Chip and handler names from ``/proc/interrupts``, for kernels without ``/sys/kernel/irq``.

A line is ``N: <count per CPU column> CHIP [HWIRQ-]TYPE NAME``.  Old kernels (before
``/sys/kernel/irq``, 4.17) print the chip and the trigger type joined
(``IO-APIC-edge``, ``PCI-MSI-edge``); newer ones print ``CHIP HWIRQ-TYPE``.
"""

from __future__ import annotations

import re

from irqagent.cpumask import is_decimal

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict, Tuple

_TYPED = re.compile(r"^(?P<chip>.*?)\s+(?:[0-9]+-)?(?P<type>edge|level|fasteoi|simple|none|bad)\b\s*(?P<name>.*)$")
_JOINED_TYPE = re.compile(r"-(edge|level|fasteoi)$")


class InterruptsFormatError(ValueError):
    """``/proc/interrupts`` text that cannot be understood."""


def parse_interrupts(text: str) -> Dict[int, Tuple[str, str]]:
    """Map IRQ number -> (chip name, handler names) for the numbered lines."""
    lines = text.splitlines()
    if not lines:
        raise InterruptsFormatError("empty file")
    ncpus = len(lines[0].split())
    if ncpus == 0 or not all(col.startswith("CPU") for col in lines[0].split()):
        raise InterruptsFormatError("first line is not the CPU header")
    result: Dict[int, Tuple[str, str]] = {}
    for line in lines[1:]:
        head, sep, rest = line.partition(":")
        head = head.strip()
        if not sep or not is_decimal(head) or len(head) > 9:
            continue  # NMI, LOC, ERR... are not IRQs (nor is a 4,300-digit number)
        fields = rest.split(None, ncpus)
        if len(fields) <= ncpus:
            result[int(head)] = ("", "")
            continue
        tail = fields[ncpus]
        match = _TYPED.match(tail)
        if match:
            chip, name = match.group("chip").strip(), match.group("name").strip()
        else:
            parts = tail.split(None, 1)
            chip = _JOINED_TYPE.sub("", parts[0])
            name = parts[1].strip() if len(parts) > 1 else ""
        result[int(head)] = (chip, name)
    return result
