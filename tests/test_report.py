"""The Report decides the exit status (SPEC: 0 all compliant, 1 an IRQ does not comply or vCPUs
were refused; restore: 1 when a journaled item was not restored) and the JSON summary."""

from irqagent import runner
from irqagent.config import Config
from irqagent.kernel import KernelTree
from irqagent.records import replace

# qemu-kvm-256: 256 vCPUs, APIC IDs 0-255, all reachable with 8-bit destinations: every IRQ complies.
# cloud-hypervisor-320: its five IO-APIC IRQs on CPUs 0-319 do not (its IO-APIC reaches APIC IDs 0-255).


def audit(tree, name):
    return runner.audit(KernelTree(tree(name)), Config())


def test_a_compliant_guest_exits_0_and_a_noncompliant_one_1(tree):
    good, bad = audit(tree, "qemu-kvm-256"), audit(tree, "cloud-hypervisor-320")
    assert int(good.exit_status) == 0 and good.noncompliant == []
    assert int(bad.exit_status) == 1 and sorted(row.irq for row in bad.noncompliant) == [1, 4, 8, 9, 12]


def test_ignored_irqs_do_not_make_the_run_fail(tree):
    """An IRQ a rule tells the agent to leave alone is reported, not held against the run."""
    report = audit(tree, "cloud-hypervisor-320")
    ignored = tuple(replace(row, status="ignored") if not row.compliant else row for row in report.rows)
    assert int(replace(report, rows=ignored).exit_status) == 0


def test_restore_exit_status_counts_only_what_was_not_restored(tree):
    report = replace(audit(tree, "cloud-hypervisor-320"), command="restore")  # non-compliant rows, all restored
    assert int(report.exit_status) == 0
    assert int(replace(report, not_restored=1).exit_status) == 1


def test_summary_counts_and_json(tree):
    report = audit(tree, "cloud-hypervisor-320")
    summary = report.summary()
    assert summary == {
        "irqs": 12,
        "compliant": 7,
        "noncompliant": 5,
        "writes": 0,
        "by_status": {"ok": 7, "would-change": 5},
    }
    document = report.to_json()
    assert document["summary"] == summary and "not_restored" not in summary
    assert list(document["irqs"][0]) == [
        "irq",
        "chip",
        "name",
        "device",
        "destination",
        "affinity",
        "effective",
        "target",
        "status",
        "compliant",
        "errno",
        "detail",
    ]
    restored = replace(report, command="restore", not_restored=2).to_json()
    assert restored["summary"]["not_restored"] == 2
