"""Audits of the real QEMU 10 captures, checked against what their own boot logs say.

The oracle is each guest's serial console (tests/fixtures/real-guests/NAME.boot.log): how many CPUs
the kernel brought up, whether it enabled interrupt remapping, which x2APIC routing it chose, and
the affinity writes the capture script made (with the kernel's answers).
"""

import json
import os
import re

import pytest

from conftest import REAL_GUESTS

CAPTURES = ("R1", "R4-61-R1", "R4-510-R1", "T4")  # VT-d remapping: every vCPU online
REFUSED = ("R2", "R2-noiommu", "R3", "R4-61-R2", "R4-510-R2")  # no remapping: the kernel refused vCPUs


def boot_log(name):
    with open(os.path.join(REAL_GUESTS, f"{name}.boot.log"), errors="replace") as handle:
        return handle.read()


def facts_from_log(name):
    log = boot_log(name)
    brought_up = int(re.search(r"smp: Brought up \d+ nodes?, (\d+) CPUs", log).group(1))
    routing = re.findall(
        r"(?:Switched APIC routing to: |Setting APIC routing to )(cluster x2apic|physical x2apic)", log
    )
    return {
        "online": brought_up,
        "remapping": "Enabled IRQ remapping in x2apic mode" in log,
        "cluster": bool(routing) and routing[-1] == "cluster x2apic",
        "kernel": re.search(r"=== LAB BEGIN .*kernel=(\S+)", log).group(1),
    }


@pytest.fixture(scope="module")
def audits(real_guest):
    from conftest import run_process

    results = {}
    for name in CAPTURES + REFUSED:
        root = real_guest(name)
        done = run_process("audit", "--root", root, "--format", "json", "--config", "/dev/null")
        results[name] = (done.returncode, json.loads(done.stdout), done.stderr)
    return results


@pytest.mark.parametrize("name", CAPTURES)
def test_platform_matches_the_boot_log(audits, name):
    expected = facts_from_log(name)
    code, doc, err = audits[name]
    assert code in (0, 1), err
    assert doc["kernel"] == expected["kernel"]
    assert sum(cpu["online"] for cpu in doc["cpus"]) == expected["online"]
    assert doc["apic"]["remapped"] is expected["remapping"]
    assert doc["apic"]["mode"] == "x2apic"  # "x2apic: enabled by BIOS" / "x2apic enabled"
    assert doc["hypervisor"]["vmm"] == "qemu" and doc["hypervisor"]["vendor"] == "tcg"
    assert doc["hypervisor"]["ext_dest_id"] is False  # remapping: the kernel never sets it up
    assert doc["refused_cpus"] == [] and doc["refused_fix"] is None  # every vCPU came up


@pytest.mark.parametrize("name", CAPTURES)
def test_remapped_controllers_reach_every_cpu(audits, name):
    # R1's capture wrote '287' and '256' to the IR-IO-APIC ttyS0 IRQ and to a virtio-net vector:
    # rc=0, effective affinity 287/256 after an interrupt. Remapping reaches every CPU.
    _, doc, _ = audits[name]
    every = f"0-{facts_from_log(name)['online'] - 1}"
    for controller in doc["controllers"]:
        if controller["chip"].startswith("IR-") and controller["destination"] != "none":
            assert (controller["destination"], controller["reachable"], controller["unreachable"]) == (
                "remapped",
                every,
                "",
            )


def test_r1_dmar_msi_reaches_apic_ids_0_to_7_in_cluster_mode(audits):
    code, doc, _ = audits["R1"]
    assert facts_from_log("R1")["cluster"]
    (dmar,) = [c for c in doc["controllers"] if c["chip"] == "DMAR-MSI"]
    assert (dmar["destination"], dmar["source"], dmar["reachable"], dmar["unreachable"]) == (
        "8bit",
        "vmm",
        "0-7",
        "8-287",
    )
    (irq,) = [row for row in doc["irqs"] if row["chip"] == "DMAR-MSI"]
    # The capture: "irq 24 chip=DMAR-MSI actions=dmar0 mode=644 initial aff=0-287".
    assert (irq["irq"], irq["affinity"], irq["target"], irq["status"]) == (24, "0-287", "0-7", "would-change")
    assert code == 1


def test_r1_does_not_narrow_default_smp_affinity_for_the_iommu_fault_interrupt(audits):
    _, doc, _ = audits["R1"]
    default = doc["default_smp_affinity"]
    assert (default["affinity"], default["status"]) == ("0-287", "ok")


def test_r1_managed_vectors_are_read_only_and_left_alone(audits):
    # 6.12: managed queue vectors have 0444 files; the capture's write to virtio1-req.0 got EPERM.
    _, doc, _ = audits["R1"]
    managed = [row for row in doc["irqs"] if row["name"].startswith("virtio1-req.")]
    assert managed and all(row["status"] == "managed" and row["compliant"] for row in managed)


@pytest.mark.parametrize("name", ["R4-61-R1", "R4-510-R1"])
def test_older_kernels_keep_dmar_msi_on_cpu_0(audits, name):
    # 6.1 and 5.10 start the DMAR fault interrupt on CPU 0 ("initial aff=0"): compliant, nothing to do.
    code, doc, _ = audits[name]
    (irq,) = [row for row in doc["irqs"] if row["chip"] == "DMAR-MSI"]
    assert (irq["affinity"], irq["status"]) == ("0", "ok")
    assert code == 0 and doc["summary"]["writes"] == 0
    assert {c["chip"] for c in doc["controllers"]} >= {"IR-IO-APIC", "IR-PCI-MSI"}  # 6.1 names: no BDF


def test_small_guest_is_compliant(audits):
    code, doc, _ = audits["T4"]
    assert code == 0 and doc["summary"]["noncompliant"] == 0


def refused_from_log(name):
    """{cpu: apic_id or None} from the kernel's own refusal lines (6.9+ names the APIC ID)."""
    log = boot_log(name)
    refused = {int(cpu): int(apic, 16) for cpu, apic in re.findall(r"CPU (\d+) has invalid APIC ID ([0-9a-f]+)", log)}
    for cpu in re.findall(r"native_cpu_up: bad cpu (\d+)", log):
        refused.setdefault(int(cpu), None)
    return refused


@pytest.mark.parametrize("name", REFUSED)
def test_refused_vcpus_match_the_kernels_own_lines(audits, name):
    code, doc, err = audits[name]
    assert code == 1, err
    from_log = refused_from_log(name)
    assert from_log, "the boot log names refused CPUs"
    reported = {e["cpu"]: e["apic_id"] for e in doc["refused_cpus"] if not e["online_capable"]}
    assert set(reported) == set(from_log)
    for cpu, apic in from_log.items():
        if apic is not None:  # 5.10/6.1 log only the CPU number
            assert reported[cpu] == apic
    # "x2apic: IRQ remapping doesn't support X2APIC mode", "x2apic disabled": IA32_APIC_BASE bit 10 clear.
    assert "x2apic disabled" in boot_log(name)
    assert (doc["apic"]["mode"], doc["apic"]["mode_source"], doc["apic"]["limit"]) == ("xapic", "msr", 254)
    assert all("> 254: beyond the xAPIC limit" in e["reason"] for e in doc["refused_cpus"])


@pytest.mark.parametrize("name", ["R2", "R4-61-R2", "R4-510-R2"])
def test_intremap_off_with_an_iommu_is_named_as_the_fix(audits, name):
    _, doc, _ = audits[name]
    assert "intremap=off" in boot_log(name).split("Command line:")[1].splitlines()[0]
    assert doc["refused_fix"].startswith("Remove intremap=off from the kernel command line")


def test_without_an_iommu_tcg_needs_a_viommu(audits):
    _, doc, _ = audits["R2-noiommu"]
    assert doc["refused_fix"].startswith("QEMU without KVM offers no extended destination ID")


def test_sparse_capture_lists_the_disabled_entries_beyond_the_limit_as_slots(audits):
    # -smp 8,sockets=2,cores=200,maxcpus=400 plus two vCPUs in socket 1: MADT revision 3 with 390
    # disabled entries; 6.12 counted none as hot-pluggable ("plus 0 hotplug CPUs"), so they have no number.
    _, doc, _ = audits["R3"]
    assert "Allowing 10 present CPUs plus 0 hotplug CPUs" in boot_log("R3")
    slots = [e for e in doc["refused_cpus"] if e["online_capable"]]
    assert [e["apic_id"] for e in slots] == list(range(257, 455))
    assert all(e["cpu"] is None for e in slots)


@pytest.mark.parametrize("name", ["R4-61-R2", "R4-510-R2"])
def test_managed_vectors_on_refused_cpus_are_left_alone(audits, name):
    # Before 6.12 the kernel spreads virtio-blk queue vectors over every possible CPU, the refused
    # ones too (virtio1-req.255 on CPU 255); their 0644 files invite a write, but a mask with no
    # online CPU is the kernel's business: ok, never rewritten.
    _, doc, _ = audits[name]
    on_refused = [row for row in doc["irqs"] if row["name"] == "virtio1-req.287"]
    assert on_refused and on_refused[0]["affinity"] == "287" and on_refused[0]["status"] == "ok"
    assert doc["summary"]["writes"] == 0 and "would-change" not in doc["summary"]["by_status"]
