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
    ],
)
def test_each_errno_is_reported_and_the_run_goes_on(tree, tmp_path, code, status):
    root = tree("kvm-300-8bit")
    faulty = FaultyTree(root, faults={25: code})
    report = apply(faulty, tmp_path / "state")
    rows = by_irq(report)
    assert rows[25].status == status
    assert rows[25].errno == errno.errorcode[code]
    assert rows[25].compliant is (status == "vanished")
    assert all(row.status == "changed" for irq, row in rows.items() if irq != 25)
    assert read(root, "proc/irq/25/smp_affinity_list") == "0-299"
    journal = JournalStore(str(tmp_path / "state")).load()
    assert 25 not in journal.entries and 24 in journal.entries  # only what really changed is journaled


def test_enospc_falls_back_once_to_the_larger_set(tree, tmp_path):
    root = tree("kvm-300-8bit")
    write(root, "proc/irq/24/smp_affinity_list", "3,280\n")
    faulty = FaultyTree(root, faults={24: errno.ENOSPC}, fail_once={24})
    row = by_irq(apply(faulty, tmp_path / "state"))[24]
    assert (row.status, row.errno, row.target) == ("changed", "ENOSPC", "0-254")
    assert [text for irq, text in faulty.attempts if irq == 24] == ["3", "0-254"]


def test_enospc_twice_is_failed(tree, tmp_path):
    root = tree("kvm-300-8bit")
    write(root, "proc/irq/24/smp_affinity_list", "3,280\n")
    row = by_irq(apply(FaultyTree(root, faults={24: errno.ENOSPC}), tmp_path / "state"))[24]
    assert (row.status, row.errno) == ("failed", "ENOSPC")


def test_kernel_adjusted_write_is_reported_not_retried(tree, tmp_path):
    root = tree("kvm-300-8bit")
    faulty = FaultyTree(root, adjust={24: "0-299"})  # accepted, but the kernel keeps 0-299
    row = by_irq(apply(faulty, tmp_path / "state"))[24]
    assert row.status == "failed" and row.errno is None and "holds 0-299" in row.detail
    assert [irq for irq, _ in faulty.attempts].count(24) == 1


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_proc_stops_with_exit_2_and_a_clean_journal(tree, tmp_path, code):
    root = tree("kvm-300-8bit")
    with pytest.raises(IrqagentError, match=errno.errorcode[code]):
        apply(FaultyTree(root, faults={irq: code for irq in range(0, 100)}), tmp_path / "state")
    assert not os.path.exists(tmp_path / "state" / "journal.json")


def test_second_apply_writes_nothing(tree, tmp_path):
    root = tree("kvm-300-8bit")
    first = apply(KernelTree(root), tmp_path / "state")
    assert first.writes == 13  # 12 IRQs + default_smp_affinity
    again = FaultyTree(root)
    second = apply(again, tmp_path / "state")
    assert second.writes == 0 and again.attempts == []


def test_journal_is_written_before_the_first_write(tree, tmp_path):
    root = tree("kvm-300-8bit")
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

    apply(Spy(root), state)
    irqs = [1, 4, 8, 9, 12, 24, 25, 26, 27, 28, 29, 30]  # every IRQ of kvm-300-8bit, all on CPUs 0-299
    expected = [(irq, "0-299") for irq in irqs] + [("default", "fff" + ",ffffffff" * 9)]
    assert sorted(seen, key=repr) == sorted(expected, key=repr)  # each written once, journaled first


def test_unjournalable_state_refuses_to_write(tree, tmp_path):
    root = tree("kvm-300-8bit")
    (tmp_path / "file").write_text("")
    from irqagent.errors import StateError

    with pytest.raises(StateError):
        apply(KernelTree(root), tmp_path / "file" / "state")
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-299"
