"""What each errno of an affinity write means: one table for apply, restore and the daemon.

README.md's failure matrix is this table in prose (KERNEL-NOTES: "Writing").
"""

from __future__ import annotations

import errno as errno_mod

from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Dict

    from irqagent.plan import Status


@frozen
class Outcome:
    status: Status  # the IRQ's report status (SPEC statuses)
    detail: str  # what it means, for the IRQ's detail
    retry: bool = False  # transient: the daemon tries the same write again on its next pass
    widen: bool = False  # apply tries once more on every allowed CPU (when that is a larger set)
    fatal: bool = False  # nothing can be written at all: the run stops (exit 2)


FATAL = Outcome("failed", "/proc is read-only or writes are not permitted", fatal=True)
REFUSED = "the kernel refuses changes to this IRQ (managed, per-CPU or no-balancing)"
BEYOND = "a CPU beyond the kernel's nr_cpu_ids"

# Every other errno is permanent: the daemon remembers the refusal and does not repeat the
# write until the mask, the target or the config changes.
TABLE: Dict[int, Outcome] = {
    errno_mod.EINVAL: Outcome("failed", "the kernel refused this mask for this IRQ"),
    errno_mod.ENOSPC: Outcome("failed", "no free vector on the target CPUs", widen=True),
    errno_mod.EOVERFLOW: Outcome("failed", BEYOND),
    errno_mod.ERANGE: Outcome("failed", BEYOND),
    errno_mod.EIO: Outcome("managed", REFUSED),
    errno_mod.EPERM: Outcome("managed", REFUSED),
    errno_mod.EBUSY: Outcome(
        "failed", "the previous move of this interrupt has not completed yet: retrying on the next pass", retry=True
    ),
    errno_mod.ENOENT: Outcome("vanished", "the IRQ was freed meanwhile"),
    errno_mod.EROFS: FATAL,
    errno_mod.EACCES: FATAL,
}
UNKNOWN = Outcome("failed", "the kernel refused the write")


def outcome_of(code: int) -> Outcome:
    """The outcome of an affinity write that failed with errno ``code``."""
    return TABLE.get(code, UNKNOWN)


def default_affinity_outcome(code: int) -> Outcome:
    """The outcome of a refused write to ``default_smp_affinity``: the file always exists and
    belongs to no IRQ, so anything but a fatal errno is a plain failure."""
    outcome = outcome_of(code)
    return outcome if outcome.fatal else Outcome("failed", "")


def errno_name(code: int) -> str:
    """``"ENOSPC"``: the name a report row carries (``"errno 1234"`` for a code Python does not name)."""
    return errno_mod.errorcode.get(code, f"errno {code}")


def outcome_named(name: str) -> Outcome:
    """The outcome of the errno a report row names (``errno_name``'s form)."""
    if name.startswith("errno "):
        code = int(name[6:]) if name[6:].isdigit() else -1
    else:
        code = getattr(errno_mod, name, -1) if name.isupper() and name.isidentifier() else -1
    return outcome_of(code)
