"""The text form of the cpuid and msr device files (snapshots and fixtures): numbered rows of
hex or decimal numbers, ``#`` comments and blank lines allowed.  Pure."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Iterator, List, Pattern, Tuple, Type

    Rows = Iterator[Tuple[int, List[int]]]


def number_rows(text: str, row: Pattern[str], expected: str, error: Type[ValueError]) -> Rows:
    """(line number, the row's numbers) for every non-blank line; ``error`` names the line that
    does not match ``row`` (quoting at most 60 characters of it)."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = row.match(line)
        if match is None:
            raise error(f"line {number}: expected {expected}, got {raw.strip()[:60]!r}")
        yield number, [int(value, 0) for value in match.groups()]
