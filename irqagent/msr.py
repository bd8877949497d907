"""IA32_APIC_BASE (MSR 0x1B): whether the kernel runs the local APIC in x2APIC mode.

The CPU's ``x2apic`` flag in cpuinfo only says the CPU offers x2APIC; the kernel may
have turned it off (a real 6.12 guest without interrupt remapping logged
``x2apic disabled``).  What the kernel runs is in IA32_APIC_BASE: bit 11 global enable,
bit 10 EXTD (x2APIC mode), bit 8 BSP (Intel SDM vol. 3, "Local APIC Status and
Location"; Linux ``arch/x86/include/asm/apicdef.h``: ``X2APIC_ENABLE`` is bit 10).

``/dev/cpu/N/msr`` (the msr module) is read with pread of 8 bytes at offset 0x1B.  A
regular file at that path is the text form, one ``MSR VALUE`` pair per line in hex, ``#``
comments allowed (like the cpuid text form).
"""

from __future__ import annotations

import re
import struct

from irqagent.textform import number_rows

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Literal, Mapping, Optional

    ApicMode = Literal["x2apic", "xapic"]  # the local APIC mode the kernel runs (IA32_APIC_BASE EXTD)

IA32_APIC_BASE = 0x1B
APIC_BASE_EXTD = 1 << 10
APIC_BASE_ENABLE = 1 << 11

_TEXT_LINE = re.compile(r"^\s*(0[xX][0-9a-fA-F]{1,8}|[0-9]{1,10})\s+(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})\s*$")


class MsrFormatError(ValueError):
    """A text-form MSR file that cannot be parsed."""


def parse_text(text: str) -> Dict[int, int]:
    """``MSR VALUE`` lines -> {msr: value}."""
    values: Dict[int, int] = {}
    for number, (msr, value) in number_rows(text, _TEXT_LINE, "two numbers MSR VALUE", MsrFormatError):
        if value >= 1 << 64:
            raise MsrFormatError(f"line {number}: the value does not fit in 64 bits")
        values[msr] = value
    return values


def format_text(values: Mapping[int, int], header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append("# MSR VALUE")
    lines.extend(f"{msr:#x} {value:#018x}" for msr, value in sorted(values.items()))
    return "\n".join(lines) + "\n"


def decode_bytes(data: bytes) -> int:
    """The 8 bytes the msr driver returns, little-endian."""
    if len(data) != 8:
        raise MsrFormatError(f"an MSR read must return 8 bytes, got {len(data)}")
    value: int = struct.unpack("<Q", data)[0]
    return value


def apic_mode(apic_base: Optional[int]) -> Optional[ApicMode]:
    """``x2apic`` / ``xapic`` from IA32_APIC_BASE, None when unknown or the APIC is disabled."""
    if apic_base is None or not apic_base & APIC_BASE_ENABLE:
        return None
    return "x2apic" if apic_base & APIC_BASE_EXTD else "xapic"
