"""Prometheus exposition: parsed by prometheus_client, linted like promtool, replaced atomically."""

import os
import re

from prometheus_client.parser import text_string_to_metric_families


NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
REQUIRED = {
    "irqagent_irqs",
    "irqagent_noncompliant_irqs",
    "irqagent_controller_reachable_cpus",
    "irqagent_controller_unreachable_cpus",
    "irqagent_writes_total",
    "irqagent_write_failures_total",
    "irqagent_last_run_timestamp_seconds",
    "irqagent_last_run_duration_seconds",
    "irqagent_ext_dest_id",
    "irqagent_refused_cpus",
    "irqagent_refused_cpu_slots",
    "irqagent_info",
}


def samples(text):
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return {(f.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}


def lint(text):
    """The checks `promtool check metrics` makes that matter here."""
    helps, types, samples = {}, {}, set()
    for line in text.splitlines():
        assert line == line.strip() and line, f"blank or padded line: {line!r}"
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in helps and help_text.strip()
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name in helps and name not in types and kind in ("gauge", "counter")
            types[name] = kind
        else:
            series, value = line.rsplit(" ", 1)
            float(value)
            name = series.split("{")[0]
            assert NAME.match(name) and name in types and series not in samples
            samples.add(series)
    for name, kind in types.items():
        assert name.startswith("irqagent_")
        assert (kind == "counter") == name.endswith("_total"), name
    return types


def test_every_family_parses_and_lints(tree, cli):
    # QEMU/KVM, 288 vCPUs, no extended destination ID: CPUs 256-287 refused, 4 managed virtio-blk vectors
    result = cli("audit", "--root", tree("qemu-kvm-288-8bit"), "--format", "prometheus")
    assert result.code == 1
    types = lint(result.out)
    assert REQUIRED <= set(types)
    value = samples(result.out)
    assert value[("irqagent_irqs", (("status", "managed"),))] == 4
    assert value[("irqagent_irqs", (("status", "ok"),))] == 10
    assert value[("irqagent_noncompliant_irqs", ())] == 0
    assert (value[("irqagent_refused_cpus", ())], value[("irqagent_refused_cpu_slots", ())]) == (32, 0)
    io_apic = (("chip", "IO-APIC"), ("destination", "8bit"))
    assert value[("irqagent_controller_reachable_cpus", io_apic)] == 256  # online CPUs 0-255
    assert value[("irqagent_controller_unreachable_cpus", io_apic)] == 0  # the refused ones are not online
    assert value[("irqagent_ext_dest_id", ())] == 0


def test_gauges_of_a_guest_with_something_to_fix(tree, cli):
    # Cloud Hypervisor: 15-bit MSIs, an 8-bit IO-APIC (APIC IDs 0-255) holding the 5 legacy IRQs on 0-319
    result = cli("audit", "--root", tree("cloud-hypervisor-320"), "--format", "prometheus")
    assert result.code == 1
    lint(result.out)
    value = samples(result.out)
    assert value[("irqagent_irqs", (("status", "would-change"),))] == 5
    assert value[("irqagent_irqs", (("status", "ok"),))] == 7
    assert value[("irqagent_noncompliant_irqs", ())] == 5
    assert value[("irqagent_controller_unreachable_cpus", (("chip", "IO-APIC"), ("destination", "8bit")))] == 64
    msix = (("chip", "PCI-MSIX-0000:00:01.0"), ("destination", "15bit"))
    assert (
        value[("irqagent_controller_reachable_cpus", msix)],
        value[("irqagent_controller_unreachable_cpus", msix)],
    ) == (
        320,
        0,
    )
    assert value[("irqagent_ext_dest_id", ())] == 1
    assert (value[("irqagent_refused_cpus", ())], value[("irqagent_refused_cpu_slots", ())]) == (0, 0)


def test_hot_plug_slots_beyond_the_limit_are_their_own_gauge(tree, cli):
    # 100 Online Capable slots with APIC IDs 200-299 under the 8-bit limit 255: 256-299 can never come online
    result = cli("audit", "--root", tree("refused-slots"), "--format", "prometheus")
    assert result.code == 0
    value = samples(result.out)
    assert (value[("irqagent_refused_cpus", ())], value[("irqagent_refused_cpu_slots", ())]) == (0, 44)


def test_apply_counts_writes_and_failures(tree, tmp_path):
    """cloud-hypervisor-320: the 5 IO-APIC IRQs to write; the kernel refuses IRQs 1 and 4 (EINVAL) and
    8 (ENOSPC: 0-255 is every allowed CPU, so no larger set to retry on): 2 writes, failures by errno."""
    import errno

    from irqagent import runner
    from irqagent.config import Config
    from irqagent.journal import JournalStore
    from irqagent.render_prometheus import render_prometheus

    from test_execute import FaultyTree

    faults = {1: errno.EINVAL, 4: errno.EINVAL, 8: errno.ENOSPC}
    root = tree("cloud-hypervisor-320")
    report = runner.apply(FaultyTree(root, faults=faults), Config(), JournalStore(str(tmp_path / "s")))
    text = render_prometheus(report)
    lint(text)
    value = samples(text)
    assert value[("irqagent_writes", ())] == 2  # samples() keys counters by family name (no _total)
    failures = {labels: v for (name, labels), v in value.items() if name == "irqagent_write_failures"}
    assert failures == {(("errno", "EINVAL"),): 2, (("errno", "ENOSPC"),): 1}
    assert value[("irqagent_irqs", (("status", "failed"),))] == 3
    assert value[("irqagent_irqs", (("status", "changed"),))] == 2


def test_label_values_are_escaped(tree, cli):
    from irqagent.render_prometheus import escape

    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_output_file_is_replaced_atomically(tree, cli, tmp_path):
    out = tmp_path / "irqagent.prom"
    out.write_text("stale\n")
    inode = os.stat(out).st_ino
    assert (
        cli("audit", "--root", tree("cloud-hypervisor-320"), "--format", "prometheus", "--output", str(out)).code == 1
    )
    assert os.stat(out).st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["cloud-hypervisor-320", "irqagent.prom"]
    lint(out.read_text())
