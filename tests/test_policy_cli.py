"""Policies end to end on fixture trees: spread, exclusions, rules of every kind, irqbalance."""

import os
import shutil
import subprocess
import time

import pytest
from hypothesis import given, settings, strategies as st

from irqagent import cpumask
from irqagent.irqbalance import irqbalance_warning
from irqagent.config import Config, Policy, parse_config
from irqagent.facts import IrqFacts

from conftest import make_facts, read
from test_plan import plan_for


def rows(result):
    return {row["irq"]: row for row in result.json()["irqs"]}


def config_file(tmp_path, text):
    path = tmp_path / "irqagent.toml"
    path.write_text(text)
    return str(path)


def test_spread_numa_local_distinct_and_stable(tree, cli, tmp_path):
    root = tree("numa-spread")
    config = config_file(tmp_path, '[policy]\nmode = "spread"\n')
    first = cli("apply", "--root", root, "--config", config, "--format", "json")
    assert first.code == 0
    r = rows(first)
    virtio = [cpumask.parse_cpulist(r[irq]["target"]) for irq in range(25, 29)]  # node 0: CPUs 0-7
    nvme = [cpumask.parse_cpulist(r[irq]["target"]) for irq in range(33, 37)]  # node 1: CPUs 8-15
    assert all(cpumask.count(m) == 1 and m & 0x00FF for m in virtio) and len(set(virtio)) == 4
    assert all(cpumask.count(m) == 1 and m & 0xFF00 for m in nvme) and len(set(nvme)) == 4
    again = cli("apply", "--root", root, "--config", config, "--format", "json")
    assert again.json()["summary"]["writes"] == 0


def test_rules_by_irq_name_chip_device_driver(tree, cli, tmp_path):
    root = tree("numa-spread")
    config = config_file(
        tmp_path,
        "\n".join(
            [
                "[policy]\ndefault_smp_affinity = false",
                '[[rule]]\nirq = "1"\nignore = true',
                '[[rule]]\nname = "virtio*-input.*"\ncpus = "2-3"',
                '[[rule]]\ndriver = "nvme"\nname = "nvme0q0"\ncpus = "15"',
                '[[rule]]\ndevice = "0000:00:02.*"\ncpus = "8-11"',
                '[[rule]]\nchip = "IO-APIC"\ncpus = "0"',
            ]
        ),
    )
    result = cli("apply", "--root", root, "--config", config, "--format", "json")
    r = rows(result)
    assert r[1]["status"] == "ignored" and read(root, "proc/irq/1/smp_affinity_list") == "0-15"
    assert r[25]["target"] == "2-3" and read(root, "proc/irq/25/smp_affinity_list") == "2-3"
    assert r[32]["target"] == "15"
    assert r[33]["target"] == "8-11"
    assert r[4]["target"] == "0"
    assert r[24]["status"] == "ok"  # virtio1-config matches no rule and complies
    assert cli("apply", "--root", root, "--config", config, "--format", "json").json()["summary"]["writes"] == 0


def test_policy_asking_for_unreachable_cpus_falls_back_and_says_so(tree, cli, tmp_path):
    root = tree("cloud-hypervisor-320")  # its IO-APIC reaches APIC IDs 0-255, its MSIs every CPU
    config = config_file(
        tmp_path,
        "".join(
            f'[[rule]]\nname = "{name}"\ncpus = "{cpus}"\n'
            for name, cpus in (("ttyS0", "250-260"), ("rtc0", "280-290"), ("virtio1-input.0", "250-260"))
        ),
    )
    r = rows(cli("audit", "--root", root, "--config", config, "--format", "json"))
    assert r[4]["target"] == "250-255" and "of which 256-260 are unreachable" in r[4]["detail"]
    assert r[8]["target"] == "0-255" and "using every allowed CPU" in r[8]["detail"]
    assert r[25]["target"] == "250-260" and "unreachable" not in r[25]["detail"]  # a 15-bit MSI


def test_exclude_cpus_and_cmdline(tree, cli, tmp_path):
    root = tree("numa-spread")
    with open(f"{root}/proc/cmdline", "w") as handle:
        handle.write("ro isolcpus=managed_irq,domain,14-15 nohz_full=13\n")
    config = config_file(tmp_path, '[policy]\nexclude_cpus = "0"\n')
    doc = cli("audit", "--root", root, "--config", config, "--format", "json").json()
    assert doc["excluded"] == {
        "cpus": "0,13-15",
        "reasons": ["policy.exclude_cpus=0", "isolcpus=managed_irq,domain,14-15", "nohz_full=13"],
    }
    assert {row["target"] for row in doc["irqs"]} == {"1-12"}
    assert doc["summary"]["noncompliant"] == 0  # excluded CPUs are policy, not reachability
    off = config_file(tmp_path, "[policy]\nhonour_cmdline = false\n")
    assert cli("audit", "--root", root, "--config", off, "--format", "json").json()["excluded"]["cpus"] == ""


def test_irqbalance_banned_line_includes_exclusions(tree, cli, tmp_path):
    config = config_file(tmp_path, '[policy]\nexclude_cpus = "3"\n')
    # Cloud Hypervisor's IO-APIC cannot reach CPUs 256-319 (APIC IDs above 255)
    result = cli("audit", "--root", tree("cloud-hypervisor-320"), "--config", config, "--format", "irqbalance-banned")
    # Cloud Hypervisor's IO-APIC is the exception: its IRQs (1, 4, 8, 9, 12) are banned, not CPUs 256-319,
    # which every MSI reaches.
    assert result.out == (
        'IRQBALANCE_BANNED_CPULIST=3\nIRQBALANCE_ARGS="--banirq=1 --banirq=4 --banirq=8 --banirq=9 --banirq=12"\n'
    )
    # refused vCPUs are not online: nothing for irqbalance to stay off
    result = cli("audit", "--root", tree("qemu-kvm-288-8bit"), "--config", config, "--format", "irqbalance-banned")
    assert result.out == "IRQBALANCE_BANNED_CPULIST=3\n"


def test_irqbalance_banned_line_ignores_the_iommu_fault_interrupt(tree, cli, tmp_path):
    # Like default_smp_affinity (issue 16), a one-off exception must not steer every remapped IRQ:
    # irqagent keeps DMAR-MSI on 0-7 itself; irqbalance must stay free to use all 288 CPUs.
    config = config_file(tmp_path, '[policy]\nexclude_cpus = "3"\n')
    result = cli("audit", "--root", tree("qemu-vtd-288"), "--config", config, "--format", "irqbalance-banned")
    assert result.out == 'IRQBALANCE_BANNED_CPULIST=3\nIRQBALANCE_ARGS="--banirq=24"\n'  # DMAR-MSI is IRQ 24


def test_irqbalance_warning_only_when_spreading_on_the_live_root(monkeypatch):
    import irqagent.irqbalance as module

    monkeypatch.setattr(module, "irqbalance_running", lambda: True)
    spread = parse_config('[policy]\nmode = "spread"\n')
    assert "irqbalance is running" in irqbalance_warning(spread, "/")
    assert irqbalance_warning(spread, "/some/snapshot") is None
    assert irqbalance_warning(parse_config(""), "/") is None


def _names_running(name):
    """PIDs whose /proc/PID/comm is ``name`` (read here, independently of psutil)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as handle:
                if handle.read().strip() == name:
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_irqbalance_running_sees_a_process_named_irqbalance(tmp_path):
    """A real process whose name is irqbalance (a copy of sleep) is seen; once it is gone, it is not."""
    from irqagent.irqbalance import irqbalance_running

    if _names_running("irqbalance"):
        pytest.skip("irqbalance really runs on this machine")
    fake = tmp_path / "irqbalance"
    shutil.copy(shutil.which("sleep"), fake)
    process = subprocess.Popen([str(fake), "60"])
    try:
        deadline = time.monotonic() + 10
        while not _names_running("irqbalance") and time.monotonic() < deadline:
            time.sleep(0.01)  # Popen may return before the kernel renamed the child
        assert _names_running("irqbalance") == [process.pid]  # the oracle agrees that it runs
        assert irqbalance_running() is True
    finally:
        process.kill()
        process.wait()
    assert irqbalance_running() is False


@pytest.mark.parametrize("mode", ["restrict", "spread"])
def test_apply_twice_under_any_policy_writes_nothing(tree, cli, tmp_path, mode):
    root = tree("cloud-hypervisor-320")
    config = config_file(tmp_path, f'[policy]\nmode = "{mode}"\nexclude_cpus = "0-9"\n')
    first = cli("apply", "--root", root, "--config", config, "--format", "json").json()
    assert first["summary"]["writes"] > 0
    assert cli("apply", "--root", root, "--config", config, "--format", "json").json()["summary"]["writes"] == 0


@settings(max_examples=25, deadline=None)
@given(excluded=st.integers(0, (1 << 16) - 1), online=st.integers(1, (1 << 16) - 1))
def test_spread_plan_invariants(excluded, online):
    """Spread targets: one CPU, within reachable ∩ online ∖ excluded (when that is not empty), deterministic."""
    irqs = [
        IrqFacts(irq=24 + i, chip="PCI-MSI", name=f"q{i}", device=f"0000:00:0{i % 3}.0", affinity_text="0-15")
        for i in range(12)
    ]
    facts = make_facts(cpus=16, online=online, irqs=irqs)
    config = Config(policy=Policy(mode="spread", exclude_cpus=excluded))
    plan = plan_for(facts, config)
    allowed = online & ~excluded
    for row in plan.rows:
        target = cpumask.parse_cpulist(row.target) & online  # an "ok" row keeps its mask; only online CPUs count
        assert cpumask.count(target) == 1
        if allowed:
            assert target & allowed
    assert plan_for(facts, config).rows == plan.rows
