"""Random bytes in a kernel file: the audit still reports every IRQ once, in a valid document.

(tests/test_reliability.py fuzzes the same way for tracebacks; this checks what the report says.)
"""

import json
import os

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import irqagent

from conftest import write

# Files of tests/fixtures/live-kvm-2cpu that describe one IRQ, or the whole machine.
PER_IRQ = [
    "proc/irq/26/smp_affinity_list",
    "proc/irq/34/smp_affinity_list",
    "proc/irq/34/effective_affinity_list",
    "sys/kernel/irq/26/chip_name",
    "sys/kernel/irq/34/actions",
]
MACHINE = ["proc/irq/default_smp_affinity", "dev/cpu/0/cpuid", "proc/sys/kernel/osrelease", "proc/cmdline"]


def test_fuzzed_files_still_give_one_row_per_irq_in_a_valid_report(tree, cli):
    with open(os.path.join(os.path.dirname(irqagent.__file__), "schema", "report-2.json")) as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    root = tree("live-kvm-2cpu")
    irqs = sorted(int(name) for name in os.listdir(os.path.join(root, "proc/irq")) if name.isdigit())
    originals = {rel: open(os.path.join(root, rel), "rb").read() for rel in PER_IRQ + MACHINE}

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rel=st.sampled_from(PER_IRQ + MACHINE), data=st.binary(max_size=200))
    def check(rel, data):
        try:
            write(root, rel, data)  # keeps the file's mode (0444 ones too, as a non-root user)
            result = cli("audit", "--root", root, "--format", "json")
            if rel in PER_IRQ:  # one IRQ's file is that IRQ's problem, never the run's
                assert result.code in (0, 1), result.err
            if result.code == 2:
                assert result.out == "" and result.err.startswith("irqagent: error: ")
                assert len(result.err.splitlines()) == 1
                return
            assert result.code in (0, 1), result.err
            doc = result.json()
            validator.validate(doc)
            assert [row["irq"] for row in doc["irqs"]] == irqs  # each IRQ exactly once, in order
            summary = doc["summary"]
            assert summary["irqs"] == len(irqs) == sum(summary["by_status"].values())
            assert summary["compliant"] == sum(1 for row in doc["irqs"] if row["compliant"])
            assert summary["compliant"] + summary["noncompliant"] == len(irqs)
            if summary["noncompliant"]:
                assert result.code == 1
        finally:
            write(root, rel, originals[rel])

    check()
