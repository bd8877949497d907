"""What each errno of an affinity write means: one table for apply, restore and the daemon.

README.md's failure matrix is this table in prose (KERNEL-NOTES: "Writing").
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict

if TYPE_CHECKING:
    from irqagent.plan import Status


@dataclass(frozen=True)
class Outcome:
    status: Status  # the IRQ's report status (SPEC statuses)
    permanent: bool  # the same write would be refused again: the daemon does not retry it
    detail: str  # what it means, for the IRQ's detail
    fatal: bool = False  # nothing can be written at all: the run stops (exit 2)


FATAL = Outcome("failed", True, "/proc is read-only or writes are not permitted", fatal=True)
REFUSED = "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"

TABLE: Dict[int, Outcome] = {
    errno_mod.EINVAL: Outcome("failed", True, "the kernel refused this mask for this IRQ"),
    errno_mod.ENOSPC: Outcome("failed", True, "no free vector on the target CPUs"),
    errno_mod.EOVERFLOW: Outcome("failed", True, "a CPU beyond the kernel's nr_cpu_ids"),
    errno_mod.ERANGE: Outcome("failed", True, "a CPU beyond the kernel's nr_cpu_ids"),
    errno_mod.EIO: Outcome("managed", True, REFUSED),
    errno_mod.EPERM: Outcome("managed", True, REFUSED),
    errno_mod.EBUSY: Outcome(
        "failed", False, "the previous move of this interrupt has not completed yet: retrying on the next pass"
    ),
    errno_mod.ENOENT: Outcome("vanished", False, "the IRQ was freed meanwhile"),
    errno_mod.EROFS: FATAL,
    errno_mod.EACCES: FATAL,
}
UNKNOWN = Outcome("failed", True, "the kernel refused the write")


def outcome_of(code: int) -> Outcome:
    """The outcome of an affinity write that failed with errno ``code``."""
    return TABLE.get(code, UNKNOWN)


def default_affinity_outcome(code: int) -> Outcome:
    """The outcome of a refused write to ``default_smp_affinity``: the file always exists and
    belongs to no IRQ, so anything but a fatal errno is a plain failure."""
    outcome = outcome_of(code)
    if outcome.fatal or outcome.status == "failed":
        return outcome
    return Outcome("failed", outcome.permanent, outcome.detail)


def errno_name(code: int) -> str:
    """``"ENOSPC"``: the name a report row carries (``"errno 1234"`` for a code Python does not name)."""
    return errno_mod.errorcode.get(code, f"errno {code}")


def code_of(name: str) -> int:
    """The errno code of a name ``errno_name`` made (0 when unknown)."""
    if name.startswith("errno "):
        return int(name[6:]) if name[6:].isdigit() else 0
    return getattr(errno_mod, name, 0) if name.isupper() else 0


def retried(name: str) -> bool:
    """A write refused with this errno (by name, as reports carry it) is tried again on the
    next pass: the kernel may take it then (EBUSY: a move still in flight)."""
    return not outcome_of(code_of(name)).permanent
