"""What each errno of an affinity write means: one table for apply, restore and the daemon.

README.md's failure matrix is this table in prose (KERNEL-NOTES: "Writing").
"""

from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class Outcome:
    status: str  # the IRQ's report status (SPEC statuses); "" for a fatal errno
    permanent: bool  # the same write would be refused again: the daemon does not retry it
    detail: str  # what it means, for the IRQ's detail
    fatal: bool = False  # nothing can be written at all: the run stops (exit 2)


FATAL = Outcome("", True, "/proc is read-only or writes are not permitted", fatal=True)

TABLE: Dict[int, Outcome] = {
    errno_mod.EINVAL: Outcome("failed", True, "the kernel refused this mask for this IRQ"),
    errno_mod.ENOSPC: Outcome("failed", True, "no free vector on the target CPUs"),
    errno_mod.EOVERFLOW: Outcome("failed", True, "a CPU beyond the kernel's nr_cpu_ids"),
    errno_mod.ERANGE: Outcome("failed", True, "a CPU beyond the kernel's nr_cpu_ids"),
    errno_mod.EIO: Outcome(
        "managed", True, "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"
    ),
    errno_mod.EPERM: Outcome(
        "managed", True, "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"
    ),
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


def errno_name(code: int) -> str:
    return errno_mod.errorcode.get(code, f"errno {code}")
