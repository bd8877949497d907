"""The real CLI against every fixture tree: JSON documents, exit statuses, errors."""

import json
import os

import pytest

from irqagent import __version__

from conftest import FIXTURES, read, run_process, write

# SPEC.md: the keys of every element of "irqs".
SPEC_IRQ_KEYS = set("irq chip name device destination affinity effective target status compliant errno detail".split())


def hv(vendor, vmm, ext, offered, source):
    return {"vendor": vendor, "vmm": vmm, "ext_dest_id": ext, "ext_dest_id_offered": offered, "source": source}


X2_MSR_8 = ("x2apic", "msr", 255)  # x2APIC read from IA32_APIC_BASE, 8-bit destinations: APIC IDs 0-255
X2_MSR_15 = ("x2apic", "msr", 32767)  # the extended destination ID in use
XAPIC_MSR = ("xapic", "msr", 254)
QEMU_8 = hv("kvm", "qemu", False, False, "cpuid")  # KVM leaf 0x40000001 EAX bit 15 clear, DMI "QEMU"
QEMU_15 = hv("kvm", "qemu", True, True, "inferred")  # an online APIC ID > 255 outranks CPUID

# fixture: (exit status, hypervisor, (apic.mode, mode_source, limit), refused vCPUs (enabled, hot-plug slots),
#           {chip: (destination, source, reachable, unreachable)}) -- from irqagent/devtools/profiles.py and
# the rules of the README's reachability model; reachable/unreachable cover every CPU whose APIC ID is known.
EXPECTED = {
    "bhyve-288": (
        0,
        hv("bhyve", "bhyve", True, True, "inferred"),
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-287", ""), "PCI-MSIX-0000:00:01.0": ("15bit", "inferred", "0-287", "")},
    ),
    # bhyve offers the extended ID, but 6.12 has no bhyve hook: xAPIC, APIC IDs 255-287 refused
    "bhyve-288-old-kernel": (
        1,
        hv("bhyve", "bhyve", False, True, "inferred"),
        XAPIC_MSR,
        (33, 0),
        {"IO-APIC": ("8bit", "inferred", "0-254", "255-287")},
    ),
    # MSIs 15-bit; Cloud Hypervisor's IO-APIC uses RTE bits 63-56 only: APIC IDs 0-255
    "cloud-hypervisor-320": (
        1,
        hv("kvm", "cloud-hypervisor", True, True, "inferred"),
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("8bit", "vmm", "0-255", "256-319"), "PCI-MSIX-0000:00:01.0": ("15bit", "inferred", "0-319", "")},
    ),
    "hyperv-extdest": (
        0,
        hv("hyperv", "hyper-v", True, True, "inferred"),
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-299", ""), "Hyper-V PCIe MSI": ("any", "chip", "0-299", "")},
    ),
    # the hyperv-iommu stub: CPU number <= 255 and APIC ID <= 255; its IRQs already sit on 0-255
    "hyperv-stub-cpuid": (
        0,
        hv("hyperv", "hyper-v", False, False, "chip"),
        X2_MSR_8,
        (0, 0),
        {"IR-IO-APIC": ("hyperv-ir", "chip", "0-255", "256-299"), "Hyper-V PCIe MSI": ("any", "chip", "0-299", "")},
    ),
    "hyperv-stub-nocpuid": (
        0,
        hv("hyperv", "hyper-v", False, None, "chip"),
        ("x2apic", "inferred", 255),  # APIC ID 299 online: only x2APIC names it
        (0, 0),
        {"IR-IO-APIC": ("hyperv-ir", "chip", "0-255", "256-299"), "Hyper-V PCIe MSI": ("any", "chip", "0-299", "")},
    ),
    "inferred-15bit": (
        0,
        hv("unknown", None, True, None, "inferred"),
        ("x2apic", "inferred", 32767),
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-299", ""), "PCI-MSI": ("15bit", "inferred", "0-299", "")},
    ),
    "kvm-300-extdest": (
        0,
        QEMU_15,
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-299", ""), "PCI-MSI": ("15bit", "inferred", "0-299", "")},
    ),
    # the development machine: no msr device, no DMI in the snapshot
    "live-kvm-2cpu": (
        0,
        hv("kvm", None, False, False, "cpuid"),
        (None, None, None),
        (0, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-1", ""), "PCI-MSIX-0000:00:01.0": ("8bit", "cpuid", "0-1", "")},
    ),
    # managed vectors (0444) spread by the kernel over online CPUs: compliant
    "managed": (
        0,
        QEMU_8,
        X2_MSR_8,
        (0, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-15", ""), "PCI-MSIX-0000:00:02.0": ("8bit", "cpuid", "0-15", "")},
    ),
    "numa-spread": (
        0,
        QEMU_8,
        X2_MSR_8,
        (0, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-15", ""), "PCI-MSI": ("8bit", "cpuid", "0-15", "")},
    ),
    # no cpuid/msr device: vendor unknown, DMI still names QEMU; 64 vCPUs fit any mode
    "old-kernel": (
        0,
        hv("unknown", "qemu", False, None, "default"),
        (None, None, None),
        (0, 0),
        {"IO-APIC": ("8bit", "default", "0-63", ""), "PCI-MSI": ("8bit", "default", "0-63", "")},
    ),
    # QEMU's VT-d fault interrupt in physical mode (no remapping): APIC IDs 0-255
    "qemu-intremap-off-extdest": (
        1,
        QEMU_15,
        X2_MSR_15,
        (0, 0),
        {"DMAR-MSI": ("8bit", "vmm", "0-255", "256-287"), "IO-APIC": ("15bit", "inferred", "0-287", "")},
    ),
    "qemu-kvm-256": (
        0,
        QEMU_8,
        X2_MSR_8,
        (0, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-255", ""), "PCI-MSIX-0000:00:01.0": ("8bit", "cpuid", "0-255", "")},
    ),
    # CPUs 256-287 refused (present, offline): their APIC IDs come from the MADT
    "qemu-kvm-288-8bit": (
        1,
        QEMU_8,
        X2_MSR_8,
        (32, 0),
        {
            "IO-APIC": ("8bit", "cpuid", "0-255", "256-287"),
            "PCI-MSIX-0000:00:02.0": ("8bit", "cpuid", "0-255", "256-287"),
        },
    ),
    "qemu-kvm-288-extdest": (
        0,
        QEMU_15,
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-287", ""), "PCI-MSIX-0000:00:02.0": ("15bit", "inferred", "0-287", "")},
    ),
    # remapped; DMAR-MSI in the cluster x2APIC mode Linux uses with remapping: APIC IDs 0-7
    "qemu-vtd-288": (
        1,
        hv("kvm", "qemu", False, True, "chip"),
        X2_MSR_8,
        (0, 0),
        {
            "DMAR-MSI": ("8bit", "vmm", "0-7", "8-287"),
            "IR-IO-APIC": ("remapped", "chip", "0-287", ""),
            "IR-PCI-MSIX-0000:00:01.0": ("remapped", "chip", "0-287", ""),
        },
    ),
    "refused-510-kvm": (
        1,
        QEMU_8,
        XAPIC_MSR,
        (33, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-254", "255-287"), "PCI-MSI": ("8bit", "cpuid", "0-254", "255-287")},
    ),
    "refused-61-kvm": (
        1,
        QEMU_8,
        X2_MSR_8,
        (32, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-255", "256-287"), "PCI-MSI": ("8bit", "cpuid", "0-255", "256-287")},
    ),
    "refused-612-tcg": (
        1,
        hv("tcg", "qemu", False, False, "default"),
        XAPIC_MSR,
        (33, 0),
        {"IO-APIC": ("8bit", "default", "0-254", "255-287")},
    ),
    # hot-plug slots 200-299: 200-255 reachable if they come online, 256-299 never can (not refused: exit 0)
    "refused-slots": (
        0,
        QEMU_8,
        X2_MSR_8,
        (0, 44),
        {"IO-APIC": ("8bit", "cpuid", "0-255", "256-299")},
    ),
    # CPUs 6 and 7 have APIC IDs 256 and 455
    "refused-sparse": (
        1,
        QEMU_8,
        X2_MSR_8,
        (2, 0),
        {"IO-APIC": ("8bit", "cpuid", "0-5", "6-7"), "PCI-MSIX-0000:00:01.0": ("8bit", "cpuid", "0-5", "6-7")},
    ),
    "vendor-510-384": (
        0,
        hv("kvm", "ec2-nitro", True, True, "inferred"),
        X2_MSR_15,
        (0, 0),
        {"IO-APIC": ("15bit", "inferred", "0-383", ""), "PCI-MSI": ("15bit", "inferred", "0-383", "")},
    ),
    "xen-hvm-128": (
        0,
        hv("xen", "xen", False, False, "cpuid"),
        X2_MSR_8,
        (0, 0),
        {
            "xen-dyn": ("any", "chip", "0-127", ""),
            "xen-pirq": ("any", "chip", "0-127", ""),
            "xen-percpu": ("none", "chip", "", ""),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_audit_json_of_every_fixture(tree, cli, name):
    code, hypervisor, (mode, mode_source, limit), (refused, slots), controllers = EXPECTED[name]
    root = tree(name)
    result = cli("audit", "--root", root, "--format", "json")
    assert result.code == code, result.err
    doc = result.json()
    assert doc["schema"] == "irqagent.report/2" and doc["command"] == "audit" and doc["root"] == root
    assert doc["hypervisor"] == hypervisor
    assert (doc["apic"]["mode"], doc["apic"]["mode_source"], doc["apic"]["limit"]) == (mode, mode_source, limit)
    found = {c["chip"]: (c["destination"], c["source"], c["reachable"], c["unreachable"]) for c in doc["controllers"]}
    for chip, expected in controllers.items():
        assert found[chip] == expected, chip
    enabled = [cpu for cpu in doc["refused_cpus"] if not cpu["online_capable"]]
    assert (len(enabled), len(doc["refused_cpus"]) - len(enabled)) == (refused, slots)
    assert (doc["refused_fix"] is None) == (not doc["refused_cpus"])
    irqs = [irq["irq"] for irq in doc["irqs"]]
    assert irqs == sorted(irqs) and len(irqs) == len([d for d in os.listdir(f"{root}/proc/irq") if d.isdigit()])
    for irq in doc["irqs"]:
        assert set(irq) == SPEC_IRQ_KEYS
    summary = doc["summary"]
    assert summary["irqs"] == len(irqs) and summary["compliant"] + summary["noncompliant"] == len(irqs)
    assert summary["writes"] == 0 and sum(summary["by_status"].values()) == len(irqs)
    # exit 1: an IRQ does not comply, or enabled vCPUs were refused (hot-plug slots alone do not count)
    assert (summary["noncompliant"] > 0 or refused > 0) == (code == 1)


def test_audit_never_writes(tree, cli):
    root = tree("cloud-hypervisor-320")
    before = {p: read(root, p) for p in ("proc/irq/4/smp_affinity_list", "proc/irq/default_smp_affinity")}
    assert cli("audit", "--root", root).code == 1
    assert cli("apply", "--root", root, "--dry-run").code == 1
    assert {p: read(root, p) for p in before} == before


def test_dry_run_report_is_worded_would_change(tree, cli):
    root = tree("cloud-hypervisor-320")
    result = cli("apply", "--root", root, "--dry-run", "--format", "json")
    doc = result.json()
    assert doc["command"] == "apply" and doc["dry_run"] is True
    # the 5 IO-APIC lines (its IO-APIC reaches APIC IDs 0-255); the 7 MSI-X vectors are 15-bit
    assert doc["summary"]["by_status"] == {"would-change": 5, "ok": 7}
    rows = {irq["irq"]: irq for irq in doc["irqs"]}
    assert (rows[4]["affinity"], rows[4]["target"], rows[4]["compliant"]) == ("0-319", "0-255", False)
    assert (rows[4]["status"], rows[4]["device"]) == ("would-change", None)
    assert (rows[24]["status"], rows[24]["target"], rows[24]["device"]) == ("ok", "0-319", "0000:00:01.0")


def test_alias_lines_only_where_the_hypervisor_really_truncates(tree, cli):
    # Cloud Hypervisor's IO-APIC keeps RTE bits 63-56: APIC IDs 256-319 become 0-63, i.e. CPUs 0-63 here.
    doc = cli("audit", "--root", tree("cloud-hypervisor-320"), "--format", "json").json()
    row = next(irq for irq in doc["irqs"] if irq["irq"] == 4)
    assert "CPUs 256-319 are unreachable" in row["detail"] and "delivered to CPUs 0-63 instead" in row["detail"]
    # Real Linux refuses such CPUs elsewhere (KVM without the extended ID) or the VMM does not truncate
    # (QEMU's DMAR-MSI): no story of interrupts landing on other CPUs.
    for name in ("qemu-kvm-288-8bit", "qemu-vtd-288", "qemu-intremap-off-extdest", "refused-510-kvm"):
        doc = cli("audit", "--root", tree(name), "--format", "json").json()
        texts = [irq["detail"] for irq in doc["irqs"]] + [c.get("detail") or "" for c in doc["controllers"]]
        assert not any("instead" in text or "truncate" in text or "0xff" in text for text in texts), name


def test_apply_then_second_apply_then_restore(tree, cli, tmp_path):
    root = tree("managed")
    # An operator's hypervisor delivers to APIC IDs 0-7 only: every chip, so default_smp_affinity too.
    config = tmp_path / "c.toml"
    config.write_text('[[controller]]\nchip = "*"\ndestination = "8bit"\nreachable_apic_ids = "0-7"\n')
    first = cli("apply", "--root", root, "--config", str(config), "--format", "json")
    doc = first.json()
    # managed IRQs 42 and 43 (0444, on CPUs 8 and 12) hold unreachable CPUs and cannot be fixed: exit 1
    assert first.code == 1
    assert doc["summary"]["by_status"] == {"changed": 6, "managed": 4}
    assert doc["summary"]["writes"] == 7  # IO-APIC 1, 4, 8, 9, 12, MSI-X 24, default_smp_affinity
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-7"
    assert read(root, "proc/irq/42/smp_affinity_list") == "8"
    second = cli("apply", "--root", root, "--config", str(config), "--format", "json").json()
    assert second["summary"]["writes"] == 0
    restored = cli("restore", "--root", root, "--config", str(config), "--format", "json")
    assert restored.code == 0 and restored.json()["summary"]["writes"] == 7
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-15"


def test_output_file_is_written_atomically(tree, cli, tmp_path):
    root = tree("cloud-hypervisor-320")
    out = tmp_path / "report.json"
    out.write_text("old")
    result = cli("audit", "--root", root, "--format", "json", "--output", str(out))
    assert result.code == 1 and result.out == ""
    assert json.loads(out.read_text())["schema"] == "irqagent.report/2"
    assert sorted(os.listdir(tmp_path)) == sorted(["cloud-hypervisor-320", "report.json"])


def test_text_report_header_lines_and_summary(tree, cli):
    result = cli("audit", "--root", tree("cloud-hypervisor-320"))
    lines = result.out.splitlines()
    assert lines[0].startswith(f"irqagent {__version__} audit of ")
    assert any(line.split()[:2] == ["hypervisor", "kvm"] and "cloud-hypervisor" in line for line in lines)
    assert any(line.split()[:5] == ["IO-APIC", "8bit", "vmm", "0-255", "256-319"] for line in lines)
    assert lines[-1] == "audit: 12 IRQs, 7 compliant, 5 non-compliant, 0 writes (ok 7, would-change 5)"
    assert max(len(line) for line in lines) <= 80
    assert "\x1b[" not in result.out


def irq_table(text):
    """The IRQ lines of a text report (between the IRQ header and the summary)."""
    lines = text.splitlines()
    if not any(line.split()[:2] == ["IRQ", "CHIP"] for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["IRQ", "CHIP"])
    return [line for line in lines[start + 1 : -1] if line.strip() and line.split()[0].isdigit()]


def test_verbose_lists_ok_irqs_quiet_only_summary(tree, cli):
    root = tree("kvm-300-extdest")
    assert irq_table(cli("audit", "--root", root).out) == []
    rows = irq_table(cli("audit", "--root", root, "-v").out)
    assert len(rows) == 12 and all(row.endswith(" ok") for row in rows)
    assert cli("audit", "--root", root, "-q").out == "audit: 12 IRQs, 12 compliant, 0 non-compliant, 0 writes (ok 12)\n"


def test_controller_override_config(tree, cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[controller]]\nchip = "IO-APIC"\ndestination = "8bit"\nreachable_apic_ids = "0"\n')
    doc = cli("audit", "--root", tree("live-kvm-2cpu"), "--config", str(config), "--format", "json").json()
    io = next(c for c in doc["controllers"] if c["chip"] == "IO-APIC")
    assert (io["source"], io["reachable"], io["unreachable"]) == ("config", "0", "1")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda root: os.remove(f"{root}/proc/cpuinfo"), "cannot read .*proc/cpuinfo: ENOENT"),
        (
            lambda root: write(root, "proc/cpuinfo", "processor : 0\napicid : 0\n"),
            "online CPU 1 is not in proc/cpuinfo",
        ),
        (lambda root: write(root, "proc/cpuinfo", "\x00\xff garbage"), "proc/cpuinfo: no processor entries"),
        (lambda root: write(root, "sys/devices/system/cpu/online", "0-1junk"), "sys/devices/system/cpu/online"),
        (lambda root: __import__("shutil").rmtree(f"{root}/proc/irq"), "cannot list .*proc/irq"),
        (lambda root: write(root, "dev/cpu/0/cpuid", "0x1 nonsense\n"), "dev/cpu/0/cpuid: line 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tree, cli, mutate, message):
    root = tree("live-kvm-2cpu")
    mutate(root)
    result = cli("audit", "--root", root)
    assert result.code == 2 and result.out == ""
    assert len(result.err.strip().splitlines()) == 1
    import re

    assert re.search(message, result.err), result.err


def test_garbage_mask_fails_that_irq_only(tree, cli):
    root = tree("live-kvm-2cpu")
    write(root, "proc/irq/26/smp_affinity_list", "0-1,zz\n")
    doc = cli("audit", "--root", root, "--format", "json").json()
    row = next(irq for irq in doc["irqs"] if irq["irq"] == 26)
    assert (row["status"], row["errno"], row["compliant"]) == ("failed", None, False)
    assert doc["summary"]["by_status"]["failed"] == 1


@pytest.mark.parametrize(
    "content, message",
    [
        ("[policy\n", "invalid TOML"),
        ("[reachability]\nbroadcast = true\n", "unknown key 'broadcast'"),
        ("[reachability]\nbroadcast_apic_id_255 = false\n", 'replaced by apic_id_255 = "unicast" | "broadcast"'),
    ],
)
def test_bad_config_is_exit_2(tree, cli, tmp_path, content, message):
    config = tmp_path / "c.toml"
    config.write_text(content)
    result = cli("audit", "--root", tree("live-kvm-2cpu"), "--config", str(config))
    assert result.code == 2 and message in result.err and str(config) in result.err


def test_apic_id_255_unicast_by_default_broadcast_by_config(tree, cli, tmp_path):
    # qemu-kvm-256: 256 flat vCPUs, CPU 255 has APIC ID 255; QEMU delivers it as a unicast
    root = tree("qemu-kvm-256")
    default = cli("audit", "--root", root, "--format", "json")
    assert default.code == 0
    io = next(c for c in default.json()["controllers"] if c["chip"] == "IO-APIC")
    assert (io["reachable"], io["unreachable"]) == ("0-255", "")
    config = tmp_path / "c.toml"
    config.write_text('[reachability]\napic_id_255 = "broadcast"\n')  # a hypervisor with KVM's broadcast quirk
    result = cli("audit", "--root", root, "--config", str(config), "--format", "json")
    assert result.code == 1
    doc = result.json()
    io = next(c for c in doc["controllers"] if c["chip"] == "IO-APIC")
    assert (io["reachable"], io["unreachable"]) == ("0-254", "255")
    row = next(irq for irq in doc["irqs"] if irq["irq"] == 4)
    assert (row["affinity"], row["target"], row["status"]) == ("0-255", "0-254", "would-change")
    assert doc["summary"]["noncompliant"] == 8


def test_missing_explicit_config_is_exit_2(cli, tree, tmp_path):
    result = cli("audit", "--root", tree("live-kvm-2cpu"), "--config", str(tmp_path / "nope.toml"))
    assert result.code == 2 and "no such config file" in result.err


def test_usage_errors_are_exit_2(cli):
    assert cli("frobnicate").code == 2
    assert cli("audit", "--format", "yaml").code == 2
    result = cli("audit", "--root", "/nonexistent/dir")
    assert result.code == 2 and "not a directory" in result.err


def test_version_and_help_from_a_real_process():
    version = run_process("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"irqagent {__version__}"
    helptext = run_process("--help")
    assert helptext.returncode == 0 and "exit status:" in helptext.stdout and "restore" in helptext.stdout
    for command in ("audit", "apply", "restore", "run", "snapshot"):
        sub = run_process(command, "--help")
        assert sub.returncode == 0 and "--root" in sub.stdout


def test_subprocess_audit_of_a_fixture_exit_status(tree):
    result = run_process(
        "audit", "--root", tree("cloud-hypervisor-320"), "--format", "json", "--state-dir", "/nonexistent"
    )
    assert result.returncode == 1 and json.loads(result.stdout)["summary"]["noncompliant"] == 5
    assert result.stderr == ""


def test_fixture_dir_list_matches_expectations():
    names = {name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name))}
    # __pycache__: tests/test_fixtures.py imports tests/fixtures/regenerate.py
    assert names - {"real-files", "real-guests", "__pycache__"} == set(EXPECTED)
