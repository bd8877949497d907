"""CPU sets as Python ints (bit N = CPU N), and the kernel's two text forms.

* cpulist: ``"0-3,8,10-11"`` (``smp_affinity_list``, ``online``, config values);
  the kernel's stride form ``"0-31:2/8"`` is accepted on input.
* hex mask: ``"ffffffff,000000ff"`` (``smp_affinity``): 32-bit groups, most
  significant first, separated by commas.

Every parser raises :class:`CpumaskError` (a ``ValueError``) with a message fit
for a user; nothing else escapes.  Parsing and formatting are linear in the
length of the text or the width of the mask, so 32,768-CPU masks stay cheap.
"""

from __future__ import annotations

import functools
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Iterator, Optional

__all__ = [
    "CpumaskError",
    "parse_cpulist",
    "format_cpulist",
    "parse_hexmask",
    "format_hexmask",
    "iter_cpus",
    "count",
    "first",
    "mask_of",
    "is_decimal",
    "parse_for_file",
    "format_for_file",
]

_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+)(?::([0-9]+)/([0-9]+))?)?$")
_RUNS = re.compile(r"1+")
_HEXGROUP = re.compile(r"^[0-9a-fA-F]{1,8}$")

# Bounds on what a list may name, checked on the digits before anything is expanded:
# * CPU numbers: below nr_cpu_ids when it is known, else below MAX_CPUS -- twice the
#   32,768 CPUs the agent supports, 8 times x86's largest NR_CPUS (8,192) today.
# * APIC IDs and IRQ numbers (config lists): below MAX_ID (x86's largest NR_IRQS,
#   524,544, fits; so do 20-bit x2APIC IDs).
MAX_CPUS = 1 << 16
MAX_ID = 1 << 20
# Overlapping ranges and strides cost their length each: a list may cover at most this
# many positions in total (a list printed by the kernel covers each CPU once).
MAX_COVERED = 1 << 24
_CACHED_TEXT = 4096  # longer texts are parsed without being cached


class CpumaskError(ValueError):
    """A cpulist or hex mask that cannot be parsed, or names a CPU out of range."""


def _check_limit(highest: int, nr_cpus: Optional[int], text: str, limit: int = MAX_CPUS) -> None:
    if nr_cpus is not None and highest >= nr_cpus:
        raise CpumaskError(f"CPU {highest} in {_shorten(text)!r} is beyond the last possible CPU ({nr_cpus - 1})")
    if highest >= limit:
        raise CpumaskError(f"number {highest} in {_shorten(text)!r} is implausibly large (the limit is {limit - 1})")


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(digits: str, body: str, limit: int) -> int:
    """A decimal number of a list, refused by its length before ``int()`` reads it."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(limit)):
        raise CpumaskError(f"number {_shorten(significant, 20)} in {_shorten(body)!r} is implausibly large")
    return int(significant)


def parse_cpulist(text: str, nr_cpus: Optional[int] = None, limit: int = MAX_CPUS) -> int:
    """Parse a kernel cpulist; ``""`` (or only white space) is the empty set.

    ``nr_cpus`` (the kernel's nr_cpu_ids) bounds the CPU numbers: a CPU at or
    beyond it is an error, as it is for the kernel.  ``limit`` bounds them when
    nr_cpu_ids is unknown (``MAX_ID`` for lists of APIC IDs or IRQ numbers).
    The work is linear in the text and in the highest number, whatever the strides.
    """
    if not isinstance(text, str):
        raise CpumaskError(f"a cpulist must be text, not {type(text).__name__}")
    if len(text) <= _CACHED_TEXT:
        return _parse_cpulist_cached(text, nr_cpus, limit)
    return _parse_cpulist(text, nr_cpus, limit)


@functools.lru_cache(maxsize=1024)  # big guests: thousands of IRQs hold the same few masks
def _parse_cpulist_cached(text: str, nr_cpus: Optional[int], limit: int) -> int:
    return _parse_cpulist(text, nr_cpus, limit)


def _parse_cpulist(text: str, nr_cpus: Optional[int], limit: int) -> int:
    body = text.strip()
    if not body:
        return 0
    spans = []  # (first, last)
    strides = []  # (first, last, used, group)
    highest = -1
    covered = 0
    for part in body.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise CpumaskError(f"{_shorten(body)!r} is not a cpulist (bad element {_shorten(part)!r})")
        first = _number(match.group(1), body, limit)
        last = _number(match.group(2), body, limit) if match.group(2) is not None else first
        if last < first:
            raise CpumaskError(f"{_shorten(body)!r} is not a cpulist (range {_shorten(part)!r} runs backwards)")
        _check_limit(last, nr_cpus, body, limit)
        highest = max(highest, last)
        covered += last - first + 1
        if covered > MAX_COVERED:
            raise CpumaskError(f"{_shorten(body)!r}: its ranges cover more than {MAX_COVERED} positions")
        if match.group(3) is None:
            spans.append((first, last))
            continue
        used, group = _number(match.group(3), body, limit), _number(match.group(4), body, limit)
        if used == 0 or group == 0 or used > group:
            raise CpumaskError(f"{_shorten(body)!r} is not a cpulist (bad stride in {_shorten(part)!r})")
        if used == group or group > last - first:  # one run: a plain range
            spans.append((first, min(last, first + used - 1) if used < group else last))
        else:
            strides.append((first, last, used, group))
    if len(spans) <= 64 and not strides:
        mask = 0
        for first, last in spans:
            mask |= ((1 << (last - first + 1)) - 1) << first
        return mask
    # Many ranges or strides: paint a bit string once ("1" = CPU), lowest CPU first.
    bits = bytearray(b"0") * (highest + 1)
    for first, last in spans:
        bits[first : last + 1] = b"1" * (last - first + 1)
    for first, last, used, group in strides:
        length = last - first + 1
        runs = ((b"1" * used + b"0" * (group - used)) * (length // group + 1))[:length]
        # OR of ASCII "0"/"1" strings: 0x30 | 0x31 == 0x31, computed at C speed
        merged = int.from_bytes(bits[first : last + 1], "big") | int.from_bytes(runs, "big")
        bits[first : last + 1] = merged.to_bytes(length, "big")
    bits.reverse()
    return int(bits, 2)


@functools.lru_cache(maxsize=1024)
def format_cpulist(mask: int) -> str:
    """Format a CPU set as the kernel does: ascending ranges, ``""`` when empty."""
    if mask < 0:
        raise CpumaskError("a CPU mask cannot be negative")
    if mask == 0:
        return ""
    if mask & (mask - 1) == 0:  # one CPU (spread targets): no need to scan the width
        return str(mask.bit_length() - 1)
    bits = bin(mask)[:1:-1]  # least significant bit first
    parts = []
    for run in _RUNS.finditer(bits):
        first, last = run.start(), run.end() - 1
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def parse_hexmask(text: str, nr_cpus: Optional[int] = None, limit: int = MAX_CPUS) -> int:
    """Parse a kernel hex mask (``"3"``, ``"ff,ffffffff"``, ``"00000000,00000001"``); bounded
    like :func:`parse_cpulist` (hex digits convert in linear time)."""
    if not isinstance(text, str):
        raise CpumaskError(f"a hex mask must be text, not {type(text).__name__}")
    body = text.strip()
    if not body:
        raise CpumaskError("empty hex mask")
    groups = body.split(",")
    for group in groups:
        if not _HEXGROUP.match(group):
            raise CpumaskError(f"{_shorten(body)!r} is not a hex CPU mask (bad group {_shorten(group)!r})")
    if len(groups) == 1:
        mask = int(groups[0], 16)
    else:
        mask = int("".join(g.rjust(8, "0") for g in groups), 16)
    if mask:
        _check_limit(mask.bit_length() - 1, nr_cpus, body, limit)
    return mask


def format_hexmask(mask: int, nr_cpus: int) -> str:
    """Format as the kernel prints ``smp_affinity`` for ``nr_cpus`` possible CPUs."""
    if mask < 0:
        raise CpumaskError("a CPU mask cannot be negative")
    if nr_cpus <= 0:
        raise CpumaskError("nr_cpus must be positive")
    _check_limit(mask.bit_length() - 1, nr_cpus, hex(mask), limit=max(nr_cpus, MAX_CPUS))
    ngroups = (nr_cpus + 31) // 32
    top_width = (nr_cpus - 32 * (ngroups - 1) + 3) // 4
    digits = format(mask, "x").rjust(top_width + 8 * (ngroups - 1), "0")
    parts = [digits[:top_width]]
    parts.extend(digits[i : i + 8] for i in range(top_width, len(digits), 8))
    return ",".join(parts)


HEX_FILES = ("smp_affinity", "default_smp_affinity")  # every other mask file is a cpulist


def parse_for_file(text: str, filename: str, nr_cpus: Optional[int] = None, limit: int = MAX_CPUS) -> int:
    """Parse the text of a mask file in that file's form (hex mask or cpulist)."""
    if filename in HEX_FILES:
        return parse_hexmask(text, nr_cpus, limit)
    return parse_cpulist(text, nr_cpus, limit)


def format_for_file(mask: int, filename: str, nr_cpus: int) -> str:
    """Format a mask in the form a mask file takes (hex mask or cpulist)."""
    if filename in HEX_FILES:
        return format_hexmask(mask, nr_cpus)
    return format_cpulist(mask)


def cpus_phrase(mask: int) -> str:
    """``"CPU 3"`` or ``"CPUs 3-5,8"`` for messages."""
    return ("CPU " if count(mask) == 1 else "CPUs ") + format_cpulist(mask)


def is_decimal(text: str) -> bool:
    """True for a plain ASCII decimal number (``str.isdigit`` also takes ``"²"``)."""
    return text.isascii() and text.isdigit()


def iter_cpus(mask: int) -> Iterator[int]:
    """The CPU numbers in ``mask``, ascending."""
    if mask <= 0:
        return
    bits = bin(mask)[:1:-1]
    position = bits.find("1")
    while position >= 0:
        yield position
        position = bits.find("1", position + 1)


def first(mask: int) -> int:
    """The lowest CPU in a non-empty mask."""
    if mask <= 0:
        raise CpumaskError("empty CPU mask has no first CPU")
    return (mask & -mask).bit_length() - 1


def count(mask: int) -> int:
    """How many CPUs ``mask`` holds."""
    return bin(mask).count("1")


def mask_of(cpus: Iterable[int]) -> int:
    """The mask holding every CPU number in the iterable ``cpus``."""
    numbers = list(cpus)
    if not numbers:
        return 0
    if min(numbers) < 0:
        raise CpumaskError("a CPU number cannot be negative")
    bits = bytearray(b"0") * (max(numbers) + 1)
    for cpu in numbers:
        bits[cpu] = 0x31  # "1"
    bits.reverse()
    return int(bits, 2)
