"""The agent's metrics pass the real `promtool check metrics`; the shipped alert rules pass
`promtool check rules` and their unit tests (`promtool test rules`).

promtool comes from $PROMTOOL, the PATH, or Debian's prometheus package unpacked by
tools/get-promtool.sh (no root needed); the tests are skipped only where none can be had.
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow

RULES = os.path.join(REPO, "contrib", "prometheus", "irqagent.rules.yml")
RULE_TESTS = os.path.join(REPO, "contrib", "prometheus", "irqagent.rules.test.yml")
# Metrics the rules use that the agent does not export yet (none: keep it empty).
PENDING: set = set()


@pytest.fixture(scope="session")
def promtool(tmp_path_factory):
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    cache = os.path.join(REPO, "build", "promtool")
    if not os.access(REPO, os.W_OK):
        cache = str(tmp_path_factory.mktemp("promtool"))
    result = subprocess.run(
        [os.path.join(REPO, "tools", "get-promtool.sh"), cache], capture_output=True, text=True, timeout=300
    )
    if result.returncode:
        pytest.skip(f"promtool cannot be installed here: {result.stderr.strip()}")
    return result.stdout.strip()


def fixture_names():
    return sorted(name for name in os.listdir(FIXTURES) if os.path.isfile(os.path.join(FIXTURES, name, "MODES")))


def check_metrics(promtool, text):
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", fixture_names())
def test_promtool_accepts_the_metrics_of_every_fixture(promtool, tree, cli, name):
    root = tree(name)
    for args in (("audit",), ("apply",)):
        result = cli(*args, "--root", root, "--format", "prometheus")
        assert result.code in (0, 1), result.err
        checked = check_metrics(promtool, result.out)
        assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr


def test_promtool_accepts_a_daemons_metrics_with_write_failures(promtool, tree):
    from irqagent.config import Config
    from irqagent.kernel import KernelTree
    from irqagent.render_prometheus import Counters, render_prometheus
    from irqagent.runner import audit

    report = audit(KernelTree(tree("cloud-hypervisor-320")), Config())
    counters = Counters(writes=40, failures={"EINVAL": 3, "ENOSPC": 1}, passes=7)
    text = render_prometheus(report, counters, checked=1764000000.5)
    assert 'irqagent_write_failures_total{errno="EINVAL"} 3\n' in text
    checked = check_metrics(promtool, text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr


def test_promtool_rejects_broken_metrics(promtool):
    """The oracle can say no: a counter without _total and a duplicate series."""
    broken = "# HELP irqagent_x X.\n# TYPE irqagent_x counter\nirqagent_x 1\nirqagent_x 2\n"
    assert check_metrics(promtool, broken).returncode != 0


def test_rules_are_valid(promtool):
    result = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS: 4 rules found" in result.stdout, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    result = subprocess.run(
        [promtool, "test", "rules", os.path.basename(RULE_TESTS)],
        cwd=os.path.dirname(RULE_TESTS),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_metrics_the_agent_exports(tree, cli):
    with open(RULES) as handle:
        used = set(re.findall(r"\birqagent_[a-z_]+", handle.read()))
    # the alert names are CamelCase; what remains are metric names
    exported = set(
        re.findall(
            r"^# TYPE (\S+) ", cli("audit", "--root", tree("cloud-hypervisor-320"), "--format", "prometheus").out, re.M
        )
    )
    assert {"irqagent_noncompliant_irqs", "irqagent_write_failures_total"} <= used
    assert used - exported <= PENDING, used - exported
