"""The real CLI against every fixture tree: JSON documents, exit statuses, errors."""

import json
import os

import pytest

from irqagent import __version__

from conftest import FIXTURES, read, run_process, write

# SPEC.md: the keys of every element of "irqs".
SPEC_IRQ_KEYS = set("irq chip name device destination affinity effective target status compliant errno detail".split())

EXPECTED = {
    # fixture: (exit status, hypervisor vendor, ext_dest_id, source, {chip: (destination, reachable, unreachable)})
    "kvm-300-8bit": (
        1,
        "kvm",
        False,
        "cpuid",
        {"IO-APIC": ("8bit", "0-254", "255-299"), "PCI-MSI": ("8bit", "0-254", "255-299")},
    ),
    "kvm-300-extdest": (0, "kvm", True, "cpuid", {"IO-APIC": ("15bit", "0-299", "")}),
    "hyperv-ir": (
        1,
        "hyperv",
        False,
        "cpuid",
        {"IR-IO-APIC": ("hyperv-ir", "0-254", "255-299"), "HV-PCI-MSIX": ("any", "0-299", "")},
    ),
    "remapped": (
        1,
        "kvm",
        False,
        "cpuid",
        {"IR-IO-APIC": ("remapped", "0-299", ""), "DMAR-MSI": ("8bit", "0-254", "255-299")},
    ),
    "xen-evtchn": (0, "xen", False, "cpuid", {"xen-dyn": ("any", "0-299", ""), "xen-percpu": ("none", "", "")}),
    "sparse-apic": (1, "kvm", False, "cpuid", {"PCI-MSI": ("8bit", "0-31", "32-63")}),
    "apic-255": (1, "kvm", False, "cpuid", {"IO-APIC": ("8bit", "0-2", "3")}),
    "managed": (1, "kvm", False, "cpuid", {"PCI-MSI": ("8bit", "0-254", "255-299")}),
    "old-kernel": (1, "unknown", False, "default", {"IO-APIC": ("8bit", "0-254", "255-299")}),
    "inferred-15bit": (0, "unknown", True, "inferred", {"PCI-MSI": ("15bit", "0-299", "")}),
    "numa-spread": (0, "kvm", False, "cpuid", {"PCI-MSI": ("8bit", "0-15", "")}),
    "live-kvm-2cpu": (0, "kvm", False, "cpuid", {"IO-APIC": ("8bit", "0-1", "")}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_audit_json_of_every_fixture(tree, cli, name):
    code, vendor, ext, source, controllers = EXPECTED[name]
    root = tree(name)
    result = cli("audit", "--root", root, "--format", "json")
    assert result.code == code, result.err
    doc = result.json()
    assert doc["schema"] == "irqagent.report/1" and doc["command"] == "audit" and doc["root"] == root
    assert doc["hypervisor"] == {"vendor": vendor, "ext_dest_id": ext, "source": source}
    found = {c["chip"]: (c["destination"], c["reachable"], c["unreachable"]) for c in doc["controllers"]}
    for chip, expected in controllers.items():
        assert found[chip] == expected
    irqs = [irq["irq"] for irq in doc["irqs"]]
    assert irqs == sorted(irqs) and len(irqs) == len([d for d in os.listdir(f"{root}/proc/irq") if d.isdigit()])
    for irq in doc["irqs"]:
        assert set(irq) == SPEC_IRQ_KEYS
    summary = doc["summary"]
    assert summary["irqs"] == len(irqs) and summary["compliant"] + summary["noncompliant"] == len(irqs)
    assert summary["writes"] == 0 and sum(summary["by_status"].values()) == len(irqs)
    assert (summary["noncompliant"] > 0) == (code == 1)


def test_audit_never_writes(tree, cli):
    root = tree("kvm-300-8bit")
    before = {p: read(root, p) for p in ("proc/irq/24/smp_affinity_list", "proc/irq/default_smp_affinity")}
    assert cli("audit", "--root", root).code == 1
    assert cli("apply", "--root", root, "--dry-run").code == 1
    assert {p: read(root, p) for p in before} == before


def test_dry_run_report_is_worded_would_change(tree, cli):
    root = tree("kvm-300-8bit")
    result = cli("apply", "--root", root, "--dry-run", "--format", "json")
    doc = result.json()
    assert doc["command"] == "apply" and doc["dry_run"] is True
    assert doc["summary"]["by_status"] == {"would-change": 12}
    row = next(irq for irq in doc["irqs"] if irq["irq"] == 24)
    assert (row["affinity"], row["target"], row["compliant"]) == ("0-299", "0-254", False)
    assert row["device"] == "0000:00:01.0"


def test_apply_then_second_apply_then_restore(tree, cli, tmp_path):
    root = tree("managed")
    first = cli("apply", "--root", root, "--format", "json")
    doc = first.json()
    # managed IRQ 40 holds unreachable CPU 255 and cannot be fixed: exit 1
    assert first.code == 1
    assert doc["summary"]["by_status"] == {"changed": 8, "managed": 2}
    assert doc["summary"]["writes"] == 9
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-254"
    second = cli("apply", "--root", root, "--format", "json").json()
    assert second["summary"]["writes"] == 0
    restored = cli("restore", "--root", root, "--format", "json")
    assert restored.code == 0 and restored.json()["summary"]["writes"] == 9
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-299"


def test_output_file_is_written_atomically(tree, cli, tmp_path):
    root = tree("kvm-300-8bit")
    out = tmp_path / "report.json"
    out.write_text("old")
    result = cli("audit", "--root", root, "--format", "json", "--output", str(out))
    assert result.code == 1 and result.out == ""
    assert json.loads(out.read_text())["schema"] == "irqagent.report/1"
    assert sorted(os.listdir(tmp_path)) == sorted(["kvm-300-8bit", "report.json"])


def test_text_report_header_lines_and_summary(tree, cli):
    result = cli("audit", "--root", tree("kvm-300-8bit"))
    lines = result.out.splitlines()
    assert lines[0].startswith(f"irqagent {__version__} audit of ")
    assert any(line.split()[:2] == ["hypervisor", "kvm"] for line in lines)
    assert any("IO-APIC" in line and "0-254" in line and "255-299" in line for line in lines)
    assert lines[-1] == "audit: 12 IRQs, 0 compliant, 12 non-compliant, 0 writes (would-change 12)"
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
    ],
)
def test_bad_config_is_exit_2(tree, cli, tmp_path, content, message):
    config = tmp_path / "c.toml"
    config.write_text(content)
    result = cli("audit", "--root", tree("live-kvm-2cpu"), "--config", str(config))
    assert result.code == 2 and message in result.err and str(config) in result.err


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
    result = run_process("audit", "--root", tree("kvm-300-8bit"), "--format", "json", "--state-dir", "/nonexistent")
    assert result.returncode == 1 and json.loads(result.stdout)["summary"]["noncompliant"] == 12
    assert result.stderr == ""


def test_fixture_dir_list_matches_expectations():
    names = {name for name in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, name))}
    # __pycache__: tests/test_fixtures.py imports tests/fixtures/regenerate.py
    assert names - {"real-files", "__pycache__"} == set(EXPECTED)
