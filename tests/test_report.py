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
        "effective_unknown": 0,
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


def test_irqs_without_an_effective_affinity_are_counted_as_judged_on_the_mask(tree):
    report = audit(tree, "cloud-hypervisor-320")
    blind = tuple(replace(row, effective=None) for row in report.rows[:3])
    assert replace(report, rows=blind + report.rows[3:]).summary()["effective_unknown"] == 3
    vanished = tuple(replace(row, effective=None, status="vanished") for row in report.rows[:3])
    assert replace(report, rows=vanished + report.rows[3:]).summary()["effective_unknown"] == 0


def test_stuck_irqs_get_the_boot_parameter_of_the_cpus_their_controllers_reach(tree):
    """cloud-hypervisor-320: the IO-APIC reaches CPUs 0-255 (APIC IDs 0-255), the MSIs all 320."""
    report = audit(tree, "cloud-hypervisor-320")
    assert report.boot_fix is None and report.to_json()["stuck_fix"] is None
    rows = {row.irq: row for row in report.rows}
    stuck = tuple(replace(row, status="stuck") if row.irq in (4, 24) else row for row in report.rows)
    assert (rows[4].chip, rows[24].chip[:8]) == ("IO-APIC", "PCI-MSIX")
    fix = replace(report, rows=stuck).to_json()["stuck_fix"]
    assert {key: fix[key] for key in ("irqs", "cpus", "parameter", "cmdline_has", "covered")} == {
        "irqs": [4, 24],
        "cpus": "0-255",
        "parameter": "irqaffinity=0-255",
        "cmdline_has": None,
        "covered": False,
    }
    assert "GRUB_CMDLINE_LINUX in /etc/default/grub" in fix["text"]
    assert "grubby --update-kernel=ALL --args=irqaffinity=0-255" in fix["text"]
    covered = replace(report, rows=stuck, cmdline="ro irqaffinity=0-3 quiet").to_json()["stuck_fix"]
    assert (covered["cmdline_has"], covered["covered"]) == ("0-3", True)
    assert covered["text"].startswith("irqaffinity=0-3 is already on the kernel command line")
    wide = replace(report, rows=stuck, cmdline="irqaffinity=0-319").to_json()["stuck_fix"]
    assert (wide["covered"], wide["text"][:37]) == (False, "replace irqaffinity=0-319 on the kern")
