"""The executor against a tree whose writes fail the way the kernel's do (fault injection)."""

import errno
import os

import pytest

from irqagent import runner
from irqagent.config import Config
from irqagent.errors import IrqagentError
from irqagent.journal import JournalStore
from irqagent.kernel import KernelTree

from conftest import read, write


class FaultyTree(KernelTree):
    """Writes to chosen IRQs raise an errno; ``adjust`` makes the kernel keep another mask."""

    def __init__(self, root, faults=None, adjust=None, fail_once=()):
        super().__init__(root)
        self.faults = dict(faults or {})
        self.adjust = dict(adjust or {})
        self.fail_once = set(fail_once)
        self.attempts = []

    def write_affinity(self, irq, text, filename="smp_affinity_list"):
        self.attempts.append((irq, text))
        if irq in self.faults:
            code = self.faults[irq]
            if irq in self.fail_once:
                del self.faults[irq]
            raise OSError(code, os.strerror(code))
        super().write_affinity(irq, self.adjust.get(irq, text), filename)


# cloud-hypervisor-320: 320 vCPUs online, MSIs 15-bit (IRQs 24-30 comply); its IO-APIC reaches APIC IDs 0-255
# only (devices/src/ioapic.rs), so the legacy IRQs 1, 4, 8, 9, 12 (affinity 0-319) are rewritten to 0-255.
GUEST = "cloud-hypervisor-320"
LEGACY = (1, 4, 8, 9, 12)


def apply(tree, state):
    return runner.apply(tree, Config(), JournalStore(str(state)))


def by_irq(report):
    return {row.irq: row for row in report.rows}


@pytest.mark.parametrize(
    "code, status",
    [
        (errno.EINVAL, "failed"),
        (errno.ENOSPC, "failed"),
        (errno.EOVERFLOW, "failed"),
        (errno.ERANGE, "failed"),
        (errno.EIO, "managed"),
        (errno.EPERM, "managed"),
        (errno.ENOENT, "vanished"),
        (errno.EBUSY, "failed"),
    ],
)
def test_each_errno_is_reported_and_the_run_goes_on(tree, tmp_path, code, status):
    root = tree(GUEST)
    faulty = FaultyTree(root, faults={4: code})
    report = apply(faulty, tmp_path / "state")
    rows = by_irq(report)
    assert rows[4].status == status
    assert rows[4].errno == errno.errorcode[code]
    assert rows[4].compliant is (status == "vanished")
    assert all(rows[irq].status == "changed" for irq in LEGACY if irq != 4)
    assert all(row.status == "ok" for irq, row in rows.items() if irq not in LEGACY)
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"
    journal = JournalStore(str(tmp_path / "state")).load()
    assert 4 not in journal.entries and 1 in journal.entries  # only what really changed is journaled


def test_enospc_falls_back_once_to_the_larger_set(tree, tmp_path):
    root = tree(GUEST)
    write(root, "proc/irq/4/smp_affinity_list", "3,280\n")
    faulty = FaultyTree(root, faults={4: errno.ENOSPC}, fail_once={4})
    row = by_irq(apply(faulty, tmp_path / "state"))[4]
    assert (row.status, row.errno, row.target) == ("changed", "ENOSPC", "0-255")
    assert "on CPUs 3: retried on 0-255" in row.detail
    assert [text for irq, text in faulty.attempts if irq == 4] == ["3", "0-255"]


def test_enospc_twice_is_failed(tree, tmp_path):
    root = tree(GUEST)
    write(root, "proc/irq/4/smp_affinity_list", "3,280\n")
    row = by_irq(apply(FaultyTree(root, faults={4: errno.ENOSPC}), tmp_path / "state"))[4]
    assert (row.status, row.errno) == ("failed", "ENOSPC")


def test_kernel_adjusted_write_is_reported_not_retried(tree, tmp_path):
    root = tree(GUEST)
    faulty = FaultyTree(root, adjust={4: "0-319"})  # accepted, but the kernel keeps 0-319
    row = by_irq(apply(faulty, tmp_path / "state"))[4]
    assert row.status == "failed" and row.errno is None and "holds 0-319" in row.detail
    assert [irq for irq, _ in faulty.attempts].count(4) == 1


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_proc_stops_with_exit_2_and_a_clean_journal(tree, tmp_path, code):
    root = tree(GUEST)
    with pytest.raises(IrqagentError, match=errno.errorcode[code]):
        apply(FaultyTree(root, faults={irq: code for irq in range(0, 100)}), tmp_path / "state")
    assert not os.path.exists(tmp_path / "state" / "journal.json")


def test_second_apply_writes_nothing(tree, tmp_path):
    root = tree(GUEST)
    first = apply(KernelTree(root), tmp_path / "state")
    # The 5 IO-APIC IRQs; default_smp_affinity stays 0-319: new device IRQs are 15-bit MSIs.
    assert first.writes == 5
    again = FaultyTree(root)
    second = apply(again, tmp_path / "state")
    assert second.writes == 0 and again.attempts == []


def test_journal_is_written_before_the_first_write(tree, tmp_path):
    root = tree(GUEST)
    state = tmp_path / "state"
    seen = []  # (irq, what the journal on disk held for it when the write came)

    class Spy(KernelTree):
        def write_affinity(self, irq, text, filename="smp_affinity_list"):
            entry = JournalStore(str(state)).load().entries.get(irq)
            seen.append((irq, entry.original if entry else None))
            super().write_affinity(irq, text, filename)

        def write_default_affinity(self, text):
            entry = JournalStore(str(state)).load().default_affinity
            seen.append(("default", entry.original if entry else None))
            super().write_default_affinity(text)

    assert apply(Spy(root), state).writes == 5
    # cloud-hypervisor-320: the IO-APIC IRQs, all on CPUs 0-319, each written once and journaled first;
    # the MSIs and default_smp_affinity already comply (15-bit).
    assert sorted(seen, key=repr) == sorted([(irq, "0-319") for irq in (1, 4, 8, 9, 12)], key=repr)


def test_unjournalable_state_refuses_to_write(tree, tmp_path):
    root = tree(GUEST)
    (tmp_path / "file").write_text("")
    from irqagent.errors import StateError

    with pytest.raises(StateError):
        apply(KernelTree(root), tmp_path / "file" / "state")
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"
