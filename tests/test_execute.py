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


# -- the kernel's effective affinity after a write (irqagent.delivery) ---------------------------


def test_a_deferring_chip_whose_vector_stays_on_an_unreachable_cpu_is_stuck_not_changed(tree, tmp_path):
    """Cloud Hypervisor's IO-APIC: the kernel shows the new mask at once but keeps the vector on
    CPU 300 (APIC ID 300) until the next interrupt, which that IO-APIC cannot deliver."""
    root = tree(GUEST)
    write(root, "proc/irq/4/effective_affinity_list", "300\n")
    report = apply(KernelTree(root), tmp_path / "state")
    row = by_irq(report)[4]
    assert (row.status, row.compliant, row.target) == ("stuck", False, "0-255")
    assert "still delivers it to CPU 300, which this controller cannot reach" in row.detail
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"  # the write was made...
    assert 4 in JournalStore(str(tmp_path / "state")).load().entries  # ...and journaled
    assert report.exit_status == 1
    assert all(by_irq(report)[irq].status == "changed" for irq in LEGACY if irq != 4)


def test_a_deferring_chip_whose_vector_waits_on_a_reachable_cpu_is_pending_and_complies(tree, tmp_path):
    from irqagent.config import Policy

    root = tree(GUEST)
    config = Config(policy=Policy(exclude_cpus=0xFF))  # CPUs 0-7 excluded: the vector on CPU 0 must move
    report = runner.apply(KernelTree(root), config, JournalStore(str(tmp_path / "state")))
    row = by_irq(report)[4]
    assert read(root, "proc/irq/4/smp_affinity_list") == "8-255"
    assert read(root, "proc/irq/4/effective_affinity_list") == "0"
    assert (row.status, row.compliant) == ("pending", True)
    assert "moves it from CPU 0 at its next interrupt" in row.detail


class _Tree:
    def __init__(self, effective):
        self.effective = effective

    def read_effective(self, irq):
        return self.effective


class _Topology:
    online = 0b1111  # CPUs 0-3
    nr_cpu_ids = 4


def _placed(chip, effective, target=0b0011, reachable=0b0011):
    from irqagent.execute import placement_after_write
    from irqagent.plan import PlannedWrite

    write = PlannedWrite(30, "smp_affinity_list", 0b1111, target, reachable=reachable, chip=chip, name="x")
    return placement_after_write(_Tree(effective), write, target, _Topology())


def test_a_chip_that_moves_at_once_and_did_not_move_is_failed_with_the_evidence():
    placed = _placed("IR-PCI-MSIX-0000:00:03.0", "3")
    assert (placed.status, placed.compliant) == ("failed", False)
    assert placed.detail == (
        "IR-PCI-MSIX-0000:00:03.0 moves an IRQ when it is written, but effective_affinity_list still reads 3 "
        "after the kernel accepted 0-1"
    )
    assert _placed("IR-IO-APIC", "1").status == "changed"


@pytest.mark.parametrize(
    "chip, effective, status, compliant",
    [
        ("DMAR-MSI", "2", "stuck", False),  # QEMU's DMAR-MSI: the vector stays on the unreachable CPU
        ("DMAR-MSI", "0", "changed", True),
        ("IO-APIC", "2", "stuck", False),
        ("PCI-MSIX-0000:00:02.0", "2", "stuck", False),
        ("PCI-MSI", "1", "changed", True),
        ("FOO-MSI", "2", "stuck", False),  # unknown chips are never called failed
        ("IO-APIC", None, "changed", True),  # no effective_affinity_list: the mask decides
        ("IO-APIC", "", "changed", True),  # not started: no vector yet
    ],
)
def test_a_write_is_judged_by_the_effective_affinity_read_after_it(chip, effective, status, compliant):
    placed = _placed(chip, effective)
    assert (placed.status, placed.compliant) == (status, compliant)


def test_pending_needs_the_current_cpu_reachable():
    # target CPU 1, vector on CPU 0 (reachable): the next interrupt completes the move
    placed = _placed("IO-APIC", "0", target=0b0010, reachable=0b0011)
    assert (placed.status, placed.compliant) == ("pending", True)
