"""Crashes, concurrency, unusable state and hostile input: nothing is lost, nothing crashes."""

import errno
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from irqagent import runner
from irqagent.config import parse_config
from irqagent.devtools.gentree import guest_irqs, write_tree
from irqagent.devtools.profiles import cloud_hypervisor_320
from irqagent.journal import JournalStore
from irqagent.kernel import KernelTree

from conftest import IS_ROOT, REPO, kill_at_random, masks, read, reset, write, written_in_order


# A 320-vCPU Cloud Hypervisor guest (15-bit MSIs, an 8-bit IO-APIC) whose operator keeps CPUs 300-319 free of
# IRQs: every one of its 400 IRQs (0-319) and default_smp_affinity are to be written -- 401 writes.
KERNEL = "6.12.118+deb13-amd64"
EXCLUDE = '[policy]\nexclude_cpus = "300-319"\n'
CONFIG = parse_config(EXCLUDE)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The guest above, and its config file (``--config``) beside it."""
    base = tmp_path_factory.mktemp("crash")
    root = str(base / "pristine")
    write_tree(replace(cloud_hypervisor_320(), irqs=guest_irqs(320, 400, KERNEL, "kvm")), root)
    (base / "irqagent.toml").write_text(EXCLUDE)
    return root


def config_of(pristine):
    return os.path.join(os.path.dirname(pristine), "irqagent.toml")


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs (no except, no cleanup code of ours)."""


def test_the_crash_guest_writes_every_irq_and_the_default(pristine, tmp_path):
    root = str(tmp_path / "tree")
    shutil.copytree(pristine, root)
    report = runner.apply(KernelTree(root), CONFIG, JournalStore(str(tmp_path / "state")))
    assert report.writes == 401
    assert (
        read(root, "proc/irq/4/smp_affinity_list") == "0-255" and read(root, "proc/irq/24/smp_affinity_list") == "0-299"
    )


@pytest.mark.parametrize("crash_after", [0, 1, 2, 200, 399, 400])
def test_crash_between_any_two_writes_then_restore_recovers_everything(pristine, tmp_path, crash_after):
    root = str(tmp_path / "tree")
    shutil.copytree(pristine, root)
    before = masks(root)
    writes = []

    class Dying(KernelTree):
        def write_affinity(self, irq, text, filename="smp_affinity_list"):
            if len(writes) == crash_after:
                raise Crash()
            writes.append(irq)
            super().write_affinity(irq, text, filename)

        def write_default_affinity(self, text):
            if len(writes) == crash_after:
                raise Crash()
            writes.append("default")
            super().write_default_affinity(text)

    store = JournalStore(str(tmp_path / "state"))
    with pytest.raises(Crash):
        runner.apply(Dying(root), CONFIG, store)
    assert len(writes) == crash_after
    report = runner.restore_all(KernelTree(root), CONFIG, store, force=False)
    assert report.exit_status == 0
    assert masks(root) == before
    assert store.load().empty


def test_sigkill_at_random_moments_then_restore_recovers_everything(pristine, tmp_path):
    """A real `irqagent apply` process, killed with SIGKILL at seeded random moments."""
    rng = random.Random(20261125)
    before = masks(pristine)
    config = config_of(pristine)

    def start(root, state):
        return subprocess.Popen(
            [sys.executable, "-m", "irqagent", "apply", "--root", root, "--state-dir", state, "--config", config, "-q"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # An uninterrupted run: which mask files it writes, in order (kill moments are drawn among them).
    root = str(tmp_path / "timing")
    shutil.copytree(pristine, root)
    assert start(root, str(tmp_path / "timing-state")).wait(timeout=60) == 0
    order = written_in_order(before, masks(root))
    partial = 0
    root = str(tmp_path / "tree")
    shutil.copytree(pristine, root)
    for iteration in range(15):
        state = str(tmp_path / f"s{iteration}")
        reset(root, before)
        kill_at_random(start(root, state), root, order, rng)
        changed = sum(1 for key, value in masks(root).items() if value != before[key])
        partial += 0 < changed < len(before)
        report = runner.restore_all(KernelTree(root), CONFIG, JournalStore(state), force=False)
        assert report.exit_status == 0, [
            (r.irq, r.status, r.affinity, r.detail) for r in report.rows if r.status in ("ignored", "failed")
        ]
        assert masks(root) == before, f"iteration {iteration}: {changed} masks were changed before the kill"
    print(f"{partial} of 15 kills landed in the middle of the writes")
    assert partial >= 15 // 4, "the kills missed the writes: the test proves nothing"


def test_two_applies_at_once_are_serialised_by_the_lock(pristine, tmp_path):
    root = str(tmp_path / "tree")
    shutil.copytree(pristine, root)
    state = str(tmp_path / "state")
    config = config_of(pristine)
    args = [sys.executable, "-m", "irqagent", "apply", "--root", root, "--state-dir", state, "--config", config, "-q"]
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [p.communicate(timeout=60) + (p.returncode,) for p in (first, second)]
    codes = sorted(code for _, _, code in results)
    assert codes in ([0, 0], [0, 2])
    for _, err, code in results:
        if code == 2:
            assert "another irqagent apply, restore or run is active" in err
    assert JournalStore(state).load().entries  # intact and readable
    assert runner.restore_all(KernelTree(root), CONFIG, JournalStore(state), force=False).exit_status == 0
    assert masks(root) == masks(pristine)


def test_apply_beside_a_running_daemon_is_refused(tree, tmp_path):
    root = tree("cloud-hypervisor-320")
    state = str(tmp_path / "state")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", state, "--no-uevents"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while read(root, "proc/irq/4/smp_affinity_list") != "0-255" and time.monotonic() < deadline:
            time.sleep(0.05)
        result = subprocess.run(
            [sys.executable, "-m", "irqagent", "apply", "--root", root, "--state-dir", state],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert result.stderr.startswith("irqagent: error: process ") and len(result.stderr.splitlines()) == 1
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=10) == 0


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs as state directory (root only)."""
    if not IS_ROOT:
        pytest.skip("mounting needs root")
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount tmpfs here")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root  # mounts a tmpfs
def test_full_state_dir_refuses_apply_but_audit_and_dry_run_work(tree, cli, small_tmpfs):
    root = tree("cloud-hypervisor-320")
    try:
        with open(os.path.join(small_tmpfs, "filler"), "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:
        pass  # full
    result = cli("apply", "--root", root, "--state-dir", small_tmpfs)
    assert result.code == 2 and "No space left on device" in result.err and "refusing" in result.err
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"  # nothing written
    assert cli("apply", "--dry-run", "--root", root, "--state-dir", small_tmpfs).code == 1
    assert cli("audit", "--root", root, "--state-dir", small_tmpfs).code == 1


@pytest.mark.root  # mounts a tmpfs
def test_read_only_state_dir_refuses_apply(tree, cli, small_tmpfs):
    root = tree("cloud-hypervisor-320")
    subprocess.run(["mount", "-o", "remount,ro", small_tmpfs], check=True)
    result = cli("apply", "--root", root, "--state-dir", small_tmpfs)
    assert result.code == 2 and "Read-only file system" in result.err
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-319"
    assert cli("audit", "--root", root, "--state-dir", small_tmpfs).code == 1


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_proc_is_one_line_exit_2(tree, cli, tmp_path, monkeypatch, code):
    def refuse(self, irq, text, filename="smp_affinity_list"):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(KernelTree, "write_affinity", refuse)
    result = cli("apply", "--root", tree("cloud-hypervisor-320"))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert errno.errorcode[code] in result.err
    assert not os.path.exists(tmp_path / "state" / "journal.json")


def test_corrupt_journal_never_makes_restore_write(tree, cli, tmp_path):
    root = tree("cloud-hypervisor-320")
    assert cli("apply", "--root", root).code == 0
    journal = tmp_path / "state" / "journal.json"
    journal.write_text(journal.read_text()[:200])  # torn
    before = masks(root)
    result = cli("restore", "--root", root)
    assert result.code == 2 and "damaged" in result.err
    assert masks(root) == before
    assert cli("apply", "--root", root).code == 2  # apply will not overwrite the evidence either
    audit = cli("audit", "--root", root)
    assert audit.code == 0 and "warning: journal" in audit.err


def hostile(root, what):
    irq = os.path.join(root, "proc/irq")
    if what == "symlink-loop-file":
        os.remove(f"{irq}/24/smp_affinity_list")
        os.symlink("smp_affinity_list", f"{irq}/24/smp_affinity_list")
    elif what == "symlink-loop-dir":
        shutil.rmtree(f"{irq}/25")
        os.symlink("25", f"{irq}/25")
    elif what == "negative-and-huge-irq-dirs":
        os.makedirs(f"{irq}/-1")
        os.makedirs(f"{irq}/99999999999999999999")
    elif what == "binary-chip-name":
        write(root, "sys/kernel/irq/24/chip_name", b"\xff\x00\xfe garbage")
    elif what == "huge-cpu-number":
        write(root, "proc/irq/24/smp_affinity_list", "0-99999999999999\n")
    elif what == "junk-mask":
        write(root, "proc/irq/24/smp_affinity_list", "0-3\x00junk\n")
    elif what == "empty-mask-file":
        write(root, "proc/irq/24/smp_affinity_list", "")
    elif what == "directory-as-file":
        os.remove(f"{irq}/24/effective_affinity_list")
        os.makedirs(f"{irq}/24/effective_affinity_list")


@pytest.mark.parametrize(
    "what",
    [
        "symlink-loop-file",
        "symlink-loop-dir",
        "negative-and-huge-irq-dirs",
        "binary-chip-name",
        "huge-cpu-number",
        "junk-mask",
        "empty-mask-file",
        "directory-as-file",
    ],
)
def test_hostile_trees_give_per_irq_failures_never_tracebacks(tree, cli, what):
    root = tree("cloud-hypervisor-320")
    hostile(root, what)
    for args in (("audit",), ("apply",), ("restore",)):
        result = cli(*args, "--root", root, "--format", "json")
        assert result.code in (0, 1), (args, result.err)
        assert "Traceback" not in result.err and "internal error" not in result.err


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe\x00",
        b"processor : 0\n",
        b"processor : x\napicid : 0\n",
        b"processor : 0\napicid : 0\nprocessor : 1\n",
    ],
)
def test_malformed_cpuinfo_is_exit_2(tree, cli, content):
    root = tree("live-kvm-2cpu")
    write(root, "proc/cpuinfo", content)
    result = cli("audit", "--root", root)
    assert result.code == 2 and result.err.startswith("irqagent: error: ") and len(result.err.splitlines()) == 1


FUZZED_FILES = [
    "proc/cpuinfo",
    "proc/irq/26/smp_affinity_list",
    "proc/irq/default_smp_affinity",
    "sys/kernel/irq/26/chip_name",
    "sys/kernel/irq/34/actions",
    "sys/devices/system/cpu/online",
    "sys/devices/system/cpu/possible",
    "proc/sys/kernel/osrelease",
    "proc/cmdline",
    "dev/cpu/0/cpuid",
    "proc/irq/34/effective_affinity_list",
]


def test_fuzzed_kernel_files_never_crash_the_cli(tree, cli):
    """Random bytes in any file the agent reads: a report (0/1) or one clean line (2), never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    root = tree("live-kvm-2cpu")
    originals = {rel: open(os.path.join(root, rel), "rb").read() for rel in FUZZED_FILES}

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rel=st.sampled_from(FUZZED_FILES), data=st.binary(max_size=300))
    def check(rel, data):
        try:
            write(root, rel, data)
            for args in (("audit", "--format", "json"), ("apply", "--dry-run")):
                result = cli(*args, "--root", root)
                assert result.code in (0, 1, 2)
                assert "internal error" not in result.err and "Traceback" not in result.err
                if result.code == 2:
                    assert len(result.err.splitlines()) == 1
        finally:
            write(root, rel, originals[rel])

    check()
