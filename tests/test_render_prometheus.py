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
    "irqagent_info",
}


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
    result = cli("audit", "--root", tree("managed"), "--format", "prometheus")
    assert result.code == 1
    types = lint(result.out)
    assert REQUIRED <= set(types)
    value = samples(result.out)
    assert value[("irqagent_irqs", (("status", "managed"),))] == 2
    assert value[("irqagent_irqs", (("status", "would-change"),))] == 8
    assert value[("irqagent_noncompliant_irqs", ())] == 10 - 1
    assert value[("irqagent_controller_unreachable_cpus", (("chip", "PCI-MSI"), ("destination", "8bit")))] == 45
    assert value[("irqagent_ext_dest_id", ())] == 0


def samples(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_apply_counts_writes_and_failures(tree, tmp_path):
    """kvm-300-8bit: 12 IRQs and default_smp_affinity to write; the kernel refuses IRQs 25 and 26 (EINVAL)
    and 27 (ENOSPC, also on the retry): 10 writes, failures by errno."""
    import errno

    from irqagent import runner
    from irqagent.config import Config
    from irqagent.journal import JournalStore
    from irqagent.render_prometheus import render_prometheus

    from test_execute import FaultyTree

    faults = {25: errno.EINVAL, 26: errno.EINVAL, 27: errno.ENOSPC}
    report = runner.apply(FaultyTree(tree("kvm-300-8bit"), faults=faults), Config(), JournalStore(str(tmp_path / "s")))
    text = render_prometheus(report)
    lint(text)
    value = samples(text)
    assert value[("irqagent_writes_total", ())] == 10
    failures = {labels: v for (name, labels), v in value.items() if name == "irqagent_write_failures_total"}
    assert failures == {(("errno", "EINVAL"),): 2, (("errno", "ENOSPC"),): 1}
    assert value[("irqagent_irqs", (("status", "failed"),))] == 3
    assert value[("irqagent_irqs", (("status", "changed"),))] == 9


def test_label_values_are_escaped(tree, cli):
    from irqagent.render_prometheus import escape

    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_output_file_is_replaced_atomically(tree, cli, tmp_path):
    out = tmp_path / "irqagent.prom"
    out.write_text("stale\n")
    inode = os.stat(out).st_ino
    assert cli("audit", "--root", tree("apic-255"), "--format", "prometheus", "--output", str(out)).code == 1
    assert os.stat(out).st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["apic-255", "irqagent.prom"]
    lint(out.read_text())
