"""Real-kernel tests on this machine: they change /proc/irq and always restore it.

Skipped unless running as root on Linux with a writable IO-APIC IRQ.
"""

import json
import os
import sys

import pytest

from conftest import run_process

pytestmark = pytest.mark.live

LIVE = sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0 and os.path.isdir("/proc/irq")


def chip(irq):
    try:
        with open(f"/sys/kernel/irq/{irq}/chip_name") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def affinity_path(irq):
    return f"/proc/irq/{irq}/smp_affinity_list"


def read_affinity(irq):
    with open(affinity_path(irq)) as handle:
        return handle.read().strip()


def writable_ioapic_irq():
    if not LIVE:
        pytest.skip("needs root on Linux")
    online = open("/sys/devices/system/cpu/online").read().strip()
    if online in ("0", ""):
        pytest.skip("needs at least two online CPUs")
    for name in sorted(os.listdir("/proc/irq"), key=lambda n: int(n) if n.isdigit() else -1):
        if not name.isdigit() or chip(name) != "IO-APIC":
            continue
        irq = int(name)
        if os.stat(affinity_path(irq)).st_mode & 0o222 and read_affinity(irq) != "0":
            return irq
    pytest.skip("no writable IO-APIC IRQ")


@pytest.fixture
def live_irq():
    """An IO-APIC IRQ of this machine; its original mask is put back whatever happens."""
    irq = writable_ioapic_irq()
    original = read_affinity(irq)
    try:
        yield irq, original
    finally:
        if read_affinity(irq) != original:
            with open(affinity_path(irq), "w") as handle:
                handle.write(original)
        assert read_affinity(irq) == original


def test_apply_with_controller_override_then_restore(live_irq, tmp_path):
    irq, original = live_irq
    config = tmp_path / "irqagent.toml"
    others = ",".join(part for part in (f"0-{irq - 1}" if irq else "", f"{irq + 1}-100000") if part)
    config.write_text(
        "[policy]\ndefault_smp_affinity = false\n"
        '[[controller]]\nchip = "IO-APIC"\ndestination = "8bit"\nreachable_apic_ids = "0"\n'
        f'[[rule]]\nirq = "{others}"\nignore = true\n'
    )
    state = str(tmp_path / "state")
    applied = run_process("apply", "--config", str(config), "--state-dir", state, "--format", "json")
    assert applied.returncode in (0, 1), applied.stderr
    doc = json.loads(applied.stdout)
    row = next(r for r in doc["irqs"] if r["irq"] == irq)
    assert (row["status"], row["target"], row["destination"]) == ("changed", "0", "8bit")
    assert doc["summary"]["writes"] == 1
    assert read_affinity(irq) == "0"
    with open(os.path.join(state, "journal.json")) as handle:
        assert json.load(handle)["entries"][str(irq)]["original"] == original

    again = run_process("apply", "--config", str(config), "--state-dir", state, "--format", "json")
    assert json.loads(again.stdout)["summary"]["writes"] == 0

    restored = run_process("restore", "--state-dir", state, "--format", "json")
    assert restored.returncode == 0, restored.stderr
    assert read_affinity(irq) == original
    assert not os.path.exists(os.path.join(state, "journal.json"))


def test_managed_irq_is_reported_not_written():
    if not LIVE:
        pytest.skip("needs root on Linux")
    managed = [int(n) for n in os.listdir("/proc/irq") if n.isdigit() and not os.stat(affinity_path(n)).st_mode & 0o222]
    if not managed:
        pytest.skip("no managed IRQ on this machine")
    result = run_process("audit", "--format", "json", "--state-dir", "/nonexistent")
    rows = {r["irq"]: r for r in json.loads(result.stdout)["irqs"]}
    assert all(rows[irq]["status"] == "managed" for irq in managed)


def test_live_audit_reads_cpuid_device():
    if not LIVE or not os.path.exists("/dev/cpu/0/cpuid"):
        pytest.skip("needs root and the cpuid device")
    doc = json.loads(run_process("audit", "--format", "json", "--state-dir", "/nonexistent").stdout)
    assert doc["hypervisor"]["source"] == "cpuid"
    assert doc["hypervisor"]["vendor"] in ("kvm", "xen", "hyperv", "vmware", "tcg", "none", "unknown")


def test_snapshot_of_the_live_tree_reproduces_the_live_audit(tmp_path):
    if not LIVE:
        pytest.skip("needs root on Linux")
    snap = tmp_path / "snap"
    taken = run_process("snapshot", str(snap))
    assert taken.returncode == 0, taken.stderr
    live = json.loads(run_process("audit", "--format", "json", "--state-dir", "/nonexistent").stdout)
    offline = json.loads(
        run_process("audit", "--root", str(snap), "--format", "json", "--state-dir", "/nonexistent").stdout
    )
    for doc in (live, offline):
        doc.pop("root")
        for irq in doc["irqs"]:
            irq.pop("effective")  # the kernel moves effective affinity lazily, between the two reads
    assert offline == live
