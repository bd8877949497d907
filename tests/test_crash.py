"""kill -9 at seeded random moments of a re-apply and of a daemon pass after a reload:
``restore`` must recover 100% of the originals every time (issue #12).

Each test runs 50 trials of a real process on a 320-vCPU, 300-IRQ Cloud Hypervisor tree
(5 IO-APIC IRQs reaching CPUs 0-255, 295 MSIs reaching 0-319) whose IRQs already hold
what a first apply wrote; the second run (a new config) rewrites every one of them.
About a minute each on a 2-CPU machine.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from irqagent import runner
from irqagent.config import Config, parse_config
from irqagent.devtools.gentree import guest_irqs, write_tree
from irqagent.devtools.profiles import K612, cloud_hypervisor_320
from irqagent.journal import JournalStore
from irqagent.kernel import KernelTree

from conftest import REPO, kill_at_random, masks, reset, written_in_order

TRIALS = 50
# Every IRQ starts on 0-319.  The first apply moves each one and default_smp_affinity (IO-APIC 0-319 -> 32-255,
# MSI 0-319 -> 32-319); the new config moves every one again (IO-APIC -> 64-255, MSI -> 64-319).
FIRST_CONFIG = '[policy]\nexclude_cpus = "0-31"\n'
NEW_CONFIG = '[policy]\nexclude_cpus = "0-63"\n'

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_applied(tmp_path_factory):
    """(root, pristine masks, masks after the first apply, journal text after it)."""
    base = tmp_path_factory.mktemp("crash")
    root = str(base / "tree")
    write_tree(replace(cloud_hypervisor_320(), irqs=guest_irqs(320, 300, K612)), root)
    pristine = masks(root)
    assert set(pristine.values()) == {"0-319", ",".join(["ffffffff"] * 10)}
    state = str(base / "state")
    assert runner.apply(KernelTree(root), parse_config(FIRST_CONFIG), JournalStore(state)).writes == 301
    after = masks(root)
    cpus_32_319 = ",".join(["ffffffff"] * 9 + ["00000000"])
    assert [after[key] for key in (1, 24, "default")] == ["32-255", "32-319", cpus_32_319]
    with open(os.path.join(state, "journal.json")) as handle:
        journal = handle.read()
    return root, pristine, after, journal


def fresh_state(tmp_path, trial, journal):
    state = tmp_path / f"s{trial}"
    state.mkdir(mode=0o700)
    (state / "journal.json").write_text(journal)
    return str(state)


def check_recovered(root, state, pristine, trial, moved):
    report = runner.restore_all(KernelTree(root), Config(), JournalStore(state), force=False)
    stuck = [(r.irq, r.status, r.affinity, r.detail) for r in report.rows if r.status in ("ignored", "failed")]
    assert report.exit_status == 0, f"trial {trial} ({moved} IRQs moved before the kill): {stuck[:3]}"
    assert masks(root) == pristine, f"trial {trial}: not every original is back"


def test_kill_9_during_a_reapply_with_a_new_config(first_applied, tmp_path):
    root, pristine, after_first, journal = first_applied
    config = tmp_path / "new.toml"
    config.write_text(NEW_CONFIG)
    rng = random.Random(12_2026)

    def start(state):
        return subprocess.Popen(
            [sys.executable, "-m", "irqagent", "apply", "--root", root, "--state-dir", state, "--config", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    reset(root, after_first)
    timing = start(fresh_state(tmp_path, "timing", journal))
    assert timing.wait(timeout=60) == 0
    done = masks(root)
    cpus_64_319 = ",".join(["ffffffff"] * 8 + ["00000000"] * 2)
    assert [done[key] for key in (1, 24, "default")] == ["64-255", "64-319", cpus_64_319]
    assert all(done[key] != after_first[key] for key in done), "the new config must rewrite every IRQ"
    order = written_in_order(after_first, done)
    midway = 0
    for trial in range(TRIALS):
        reset(root, after_first)
        state = fresh_state(tmp_path, trial, journal)
        kill_at_random(start(state), root, order, rng)
        moved = sum(1 for key, text in masks(root).items() if text != after_first[key])
        midway += 0 < moved < len(after_first)
        check_recovered(root, state, pristine, trial, moved)
    print(f"{midway} of {TRIALS} kills landed in the middle of the writes")
    assert midway >= TRIALS // 4, "the kills missed the writes: the test proves nothing"


def test_kill_9_during_the_daemon_pass_after_a_reload(first_applied, tmp_path):
    root, pristine, after_first, journal = first_applied
    config = tmp_path / "irqagent.toml"
    rng = random.Random(20_261_125)

    def start(state, metrics):
        config.write_text(FIRST_CONFIG)  # the config of the first apply: the start pass writes nothing
        return subprocess.Popen(
            [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", state, "--config", str(config)]
            + ["--no-uevents", "--interval", "3600", "--metrics-file", metrics],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_for(path, text, process):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with open(path) as handle:
                    if text in handle.read():
                        return
            except FileNotFoundError:
                pass
            assert process.poll() is None, "the daemon died"
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} in {path}")

    def reload_pass(trial):
        """Start the daemon, wait for its first pass, reload with the new config: the process."""
        reset(root, after_first)
        state = fresh_state(tmp_path, trial, journal)
        metrics = str(tmp_path / f"m{trial}.prom")
        process = start(state, metrics)
        wait_for(metrics, "irqagent_passes_total 1", process)
        config.write_text(NEW_CONFIG)
        process.send_signal(signal.SIGHUP)
        return process, state, metrics

    process, _, metrics = reload_pass("timing")
    wait_for(metrics, "irqagent_passes_total 2", process)
    order = written_in_order(after_first, masks(root))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    midway = 0
    for trial in range(TRIALS):
        process, state, _ = reload_pass(trial)
        kill_at_random(process, root, order, rng)
        moved = sum(1 for key, text in masks(root).items() if text != after_first[key])
        midway += 0 < moved < len(after_first)
        check_recovered(root, state, pristine, trial, moved)
        shutil.rmtree(state)
    print(f"{midway} of {TRIALS} kills landed in the middle of the writes")
    assert midway >= TRIALS // 4, "the kills missed the writes: the test proves nothing"
