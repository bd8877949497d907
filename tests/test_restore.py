import errno
import os

from irqagent import runner
from irqagent.config import parse_config
from irqagent.journal import JournalStore
from irqagent.kernel import KernelTree

from conftest import read, write
from test_execute import FaultyTree


# cloud-hypervisor-320 (every IRQ and default_smp_affinity at 0-319) with CPUs 300-319 excluded: the 5 IO-APIC
# IRQs go to 0-255 (its IO-APIC reaches APIC IDs 0-255 only), the 7 MSIs and default_smp_affinity to 0-299.
GUEST = "cloud-hypervisor-320"
CONFIG = parse_config('[policy]\nexclude_cpus = "300-319"\n')


def apply_then(root, state):
    report = runner.apply(KernelTree(root), CONFIG, JournalStore(str(state)))
    assert report.writes == 13  # 12 IRQs + default_smp_affinity
    assert (
        read(root, "proc/irq/4/smp_affinity_list") == "0-255" and read(root, "proc/irq/24/smp_affinity_list") == "0-299"
    )
    return JournalStore(str(state))


def test_restore_puts_every_original_back(tree, tmp_path):
    root = tree(GUEST)
    original_default = read(root, "proc/irq/default_smp_affinity")
    store = apply_then(root, tmp_path / "state")
    report = runner.restore_all(KernelTree(root), CONFIG, store, force=False)
    assert report.exit_status == 0 and report.writes == 13
    assert all(read(root, f"proc/irq/{irq}/smp_affinity_list") == "0-319" for irq in (1, 4, 24, 30))
    assert read(root, "proc/irq/default_smp_affinity") == original_default
    assert store.load().empty


def test_restore_skips_irqs_changed_since_unless_forced(tree, tmp_path):
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    write(root, "proc/irq/24/smp_affinity_list", "7\n")  # an operator moved it
    report = runner.restore_all(KernelTree(root), CONFIG, store, force=False)
    row = {r.irq: r for r in report.rows}[24]
    assert row.status == "ignored" and "changed since" in row.detail
    assert report.exit_status == 1 and read(root, "proc/irq/24/smp_affinity_list") == "7"
    assert list(store.load().entries) == [24]
    forced = runner.restore_all(KernelTree(root), CONFIG, store, force=True)
    assert forced.exit_status == 0 and read(root, "proc/irq/24/smp_affinity_list") == "0-319"


def test_restore_skips_an_irq_number_now_owned_by_another_device(tree, tmp_path):
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    write(root, "sys/kernel/irq/25/actions", "nvme0q1\n")
    row = {r.irq: r for r in runner.restore_all(KernelTree(root), CONFIG, store, force=False).rows}[25]
    assert row.status == "ignored" and "now belongs to" in row.detail


def test_restore_of_a_vanished_irq_drops_its_entry(tree, tmp_path):
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    import shutil

    shutil.rmtree(f"{root}/proc/irq/26")
    report = runner.restore_all(KernelTree(root), CONFIG, store, force=False)
    assert report.exit_status == 0 and 26 not in store.load().entries


def test_failed_restore_keeps_the_entry(tree, tmp_path):
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    report = runner.restore_all(FaultyTree(root, faults={24: errno.EINVAL}), CONFIG, store, force=False)
    row = {r.irq: r for r in report.rows}[24]
    assert (row.status, row.errno) == ("failed", "EINVAL")
    assert report.exit_status == 1 and list(store.load().entries) == [24]


def test_restore_with_empty_journal_is_a_no_op(tree, tmp_path):
    root = tree(GUEST)
    report = runner.restore_all(KernelTree(root), CONFIG, JournalStore(str(tmp_path / "s")), force=False)
    assert report.exit_status == 0 and report.writes == 0


class DefaultFaults(KernelTree):
    """default_smp_affinity refuses writes with ``code``, or keeps ``adjusted`` instead of what is written."""

    def __init__(self, root, code=None, adjusted=None):
        super().__init__(root)
        self.code, self.adjusted = code, adjusted

    def write_default_affinity(self, text):
        if self.code is not None:
            raise OSError(self.code, os.strerror(self.code))
        super().write_default_affinity(self.adjusted or text)


def test_refused_default_affinity_restore_is_failed_and_kept(tree, tmp_path):
    """EIO means "managed" for an IRQ; default_smp_affinity belongs to no IRQ: a plain failure."""
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    report = runner.restore_all(DefaultFaults(root, code=errno.EIO), CONFIG, store, force=False)
    row = report.default_affinity
    assert (row.status, row.errno) == ("failed", "EIO") and "Input/output error" in row.detail
    assert report.exit_status == 1 and store.load().default_affinity is not None and not store.load().entries
    assert read(root, "proc/irq/default_smp_affinity") == ",".join(["00000fff"] + ["ffffffff"] * 9)  # 0-299 still


def test_default_affinity_restore_is_read_back(tree, tmp_path):
    """The kernel keeping another default mask than the original is a failure, not "changed"."""
    root = tree(GUEST)
    store = apply_then(root, tmp_path / "state")
    other = ",".join(["00000000"] * 9 + ["0000000f"])  # CPUs 0-3
    report = runner.restore_all(DefaultFaults(root, adjusted=other), CONFIG, store, force=False)
    row = report.default_affinity
    detail = "restoring 0-319: the kernel accepted it but holds 0-3"
    assert (row.status, row.errno, row.detail) == ("failed", None, detail)
    assert report.writes == 13 and report.exit_status == 1
    assert store.load().default_affinity.written == other
