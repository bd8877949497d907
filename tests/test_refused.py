"""vCPUs the kernel refused: the verdict, its ranges, the fix, and how every report carries it.

The oracle is the kernel's behaviour (KERNEL-NOTES): without remapping, x2APIC keeps APIC IDs 0-255
(0-32767 with the extended destination ID), xAPIC 0-254; a real 6.12 guest under QEMU TCG with
intremap=off logged "CPU 255 has invalid APIC ID ff. Aborting bringup" for CPUs 255-287.
"""

import json
import shutil

import pytest

from irqagent.render_prometheus import render_prometheus
from irqagent.runner import audit
from irqagent.kernel import KernelTree
from irqagent.config import Config

from conftest import read, write


def audit_json(cli, root, *extra):
    result = cli("audit", "--root", root, "--format", "json", *extra)
    return result.code, json.loads(result.out)


def test_612_tcg_intremap_off_refuses_cpus_255_to_287(tree, cli):
    code, doc = audit_json(cli, tree("refused-612-tcg"))
    assert code == 1
    assert doc["apic"]["mode"] == "xapic" and doc["apic"]["limit"] == 254
    assert [(e["cpu"], e["apic_id"], e["online_capable"]) for e in doc["refused_cpus"]] == [
        (cpu, cpu, False) for cpu in range(255, 288)
    ]
    assert doc["refused_cpus"][0]["reason"].startswith("APIC ID 255 > 254")
    assert "Remove intremap=off" in doc["refused_fix"]
    assert doc["summary"]["noncompliant"] == 0  # every IRQ complies: the refusal alone makes exit 1


def test_61_kvm_in_kernel_irqchip_refuses_cpus_256_to_287(tree, cli):
    code, doc = audit_json(cli, tree("refused-61-kvm"))
    assert code == 1 and doc["apic"]["limit"] == 255
    assert [e["cpu"] for e in doc["refused_cpus"]] == list(range(256, 288))
    assert doc["refused_cpus"][0] == {
        "cpu": 256,
        "apic_id": 256,
        "online_capable": False,
        "reason": "APIC ID 256 > 255: not addressable without the extended destination ID",
    }
    assert doc["refused_fix"] == (
        "Give the guest the extended destination ID (QEMU: -machine kernel-irqchip=split, machine type pc-5.2 "
        "or newer) or a vIOMMU with interrupt remapping (-device intel-iommu,intremap=on,eim=on)"
    )


def test_510_kvm_turns_x2apic_off_and_refuses_from_255(tree, cli):
    code, doc = audit_json(cli, tree("refused-510-kvm"))
    assert code == 1 and doc["apic"]["mode"] == "xapic"
    assert [e["apic_id"] for e in doc["refused_cpus"]] == list(range(255, 288))


def test_sparse_topology_refuses_two_of_eight(tree, cli):
    code, doc = audit_json(cli, tree("refused-sparse"))
    assert code == 1
    assert [(e["cpu"], e["apic_id"]) for e in doc["refused_cpus"]] == [(6, 256), (7, 455)]


def test_hotplug_slots_beyond_the_limit_are_listed_but_do_not_fail(tree, cli):
    code, doc = audit_json(cli, tree("refused-slots"))
    assert code == 0
    slots = doc["refused_cpus"]
    assert [e["apic_id"] for e in slots] == list(range(256, 300)) and all(e["online_capable"] for e in slots)
    assert slots[0]["reason"].startswith("hot-plug slot that can never come online")


@pytest.mark.parametrize("name", ["qemu-kvm-288-extdest", "qemu-kvm-256", "hyperv-stub-nocpuid", "xen-hvm-128"])
def test_consistent_guests_refuse_nothing(tree, cli, name):
    code, doc = audit_json(cli, tree(name))
    assert (code, doc["refused_cpus"], doc["refused_fix"]) == (0, [], None)


def test_an_operator_offlined_cpu_is_not_refused(tree, cli):
    root = tree("qemu-kvm-256")
    # CPU 7 offline (APIC ID 7, within the limit): drop it from online and from cpuinfo.
    with open(f"{root}/sys/devices/system/cpu/online", "w") as handle:
        handle.write("0-6,8-255\n")
    code, doc = audit_json(cli, root)
    assert (code, doc["refused_cpus"]) == (0, [])


def test_without_a_madt_offline_present_cpus_have_reason_unknown(tree, cli):
    root = tree("refused-61-kvm")
    shutil.rmtree(f"{root}/sys/firmware")
    code, doc = audit_json(cli, root)
    assert code == 0  # not proven refused
    assert [e["cpu"] for e in doc["refused_cpus"]] == list(range(256, 288))
    assert all(e["apic_id"] is None and "unknown" in e["reason"] for e in doc["refused_cpus"])


@pytest.mark.parametrize("damage", [b"", b"APIC\x00\x00", b"\xff" * 300])
def test_a_corrupt_madt_is_a_note_never_a_traceback(tree, cli, damage):
    root = tree("refused-61-kvm")
    write(root, "sys/firmware/acpi/tables/APIC", damage)  # the table is 0400, as in sysfs
    result = cli("audit", "--root", root, "--format", "json", "-v")
    assert result.code == 0 and "Traceback" not in result.err
    assert all(e["apic_id"] is None for e in json.loads(result.out)["refused_cpus"])


def test_text_section_groups_ranges(tree, cli):
    result = cli("audit", "--root", tree("refused-612-tcg"))
    lines = result.out.splitlines()
    start = lines.index("  REFUSED VCPUS: 33 vCPUs refused")
    assert lines[start + 1].startswith("    CPUs 255-287, APIC IDs 0xff-0x11f: APIC ID > 254: beyond the xAPIC limit")
    assert any(line.startswith("    fix: Remove intremap=off") for line in lines[start:])
    assert max(len(line) for line in lines) <= 80
    # After the controller table, before the IRQs and the summary.
    table = next(i for i, text in enumerate(lines) if "CONTROLLER" in text)
    assert lines.index("  REFUSED VCPUS: 33 vCPUs refused") > table


def test_text_section_for_sparse_ids(tree, cli):
    out = cli("audit", "--root", tree("refused-sparse")).out
    assert "    CPU 6, APIC ID 0x100: APIC ID > 255: not addressable" in out
    assert "    CPU 7, APIC ID 0x1c7: APIC ID > 255: not addressable" in out


def test_prometheus_gauges(tree):
    report = audit(KernelTree(tree("refused-slots")), Config())
    text = render_prometheus(report)
    assert "irqagent_refused_cpus 0\n" in text and "irqagent_refused_cpu_slots 44\n" in text
    report = audit(KernelTree(tree("refused-612-tcg")), Config())
    assert "irqagent_refused_cpus 33\n" in render_prometheus(report)


def test_apply_writes_nothing_for_them_but_reports_them(tree, cli):
    root = tree("qemu-kvm-288-8bit")
    result = cli("apply", "--root", root, "--format", "json")
    doc = json.loads(result.out)
    assert result.code == 1 and doc["summary"]["writes"] == 0
    assert len(doc["refused_cpus"]) == 32
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-287"  # the offline CPUs in a mask are fine


def test_bhyve_host_offers_what_the_old_kernel_cannot_use(tree, cli):
    code, doc = audit_json(cli, tree("bhyve-288-old-kernel"))
    assert code == 1 and doc["hypervisor"]["ext_dest_id_offered"] is True
    assert "6.18 or newer" in doc["refused_fix"]


def test_before_6_12_a_queue_vector_to_change_may_be_kernel_managed(tree, cli, tmp_path):
    # 6.1: managed queue vectors have 0644 files like any other; only the write tells (EIO).
    # Keeping CPU 64 free moves virtio2-req.1 (on CPU 64): the audit hedges instead of promising.
    config = tmp_path / "exclude.toml"
    config.write_text('[policy]\nexclude_cpus = "64"\n')
    doc = json.loads(cli("audit", "--root", tree("refused-61-kvm"), "--config", str(config), "--format", "json").out)
    (row,) = [row for row in doc["irqs"] if row["name"] == "virtio2-req.1"]
    assert row["status"] == "would-change" and "may be kernel-managed" in row["detail"]
    (other,) = [row for row in doc["irqs"] if row["irq"] == 4]  # ttyS0, not a queue vector
    assert other["status"] == "would-change" and "may be kernel-managed" not in other["detail"]


def test_from_6_12_managed_files_are_read_only_and_never_hedged(tree, cli, tmp_path):
    config = tmp_path / "exclude.toml"
    config.write_text('[policy]\nexclude_cpus = "64"\n')
    doc = json.loads(cli("audit", "--root", tree("qemu-kvm-288-8bit"), "--config", str(config), "--format", "json").out)
    (row,) = [row for row in doc["irqs"] if row["name"] == "virtio2-req.1"]
    assert row["status"] == "managed" and "may be kernel-managed" not in row["detail"]
