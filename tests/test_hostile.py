"""Hostile kernel trees: FIFOs, devices, endless or huge files, 5,000-digit numbers and
strides never hang, crash or blow up the agent, and one bad IRQ file never stops the others."""

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time

from dataclasses import dataclass

import pytest

from irqagent.cli import Environment, main
from irqagent.kernel import KernelTree

from conftest import REPO, read, write

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HANG = 20  # seconds: a command still running by then is hung (the test fails on TimeoutExpired)


def make_fifo(root, rel):
    path = os.path.join(root, rel)
    if os.path.lexists(path):
        os.remove(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkfifo(path)


def make_zero_device(root, rel):
    """``/dev/zero`` (1:5) at ``rel``: endless input."""
    path = os.path.join(root, rel)
    if os.path.lexists(path):
        os.remove(path)
    os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))


class Hung(BaseException):  # not Exception: the CLI turns those into "internal error"
    pass


@contextlib.contextmanager
def alarm(seconds=HANG):
    """Fail (raise Hung) when the body runs longer than ``seconds``: a blocked open() or read()
    is interrupted by SIGALRM and the handler's exception ends it."""

    def expire(_signum, _frame):
        raise Hung(f"still running after {seconds} s: hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def rows(result):
    return {row["irq"]: row for row in json.loads(result.stdout)["irqs"]}


def commands(root, tmp_path):
    """audit, apply and restore (the real CLI, in this process), each ended by an alarm
    if it runs longer than HANG seconds."""
    state = str(tmp_path / "state")
    for command in ("audit", "apply", "restore"):
        out, err = io.StringIO(), io.StringIO()
        argv = [command, "--root", root, "--state-dir", state, "--format", "json", "--config", "/dev/null"]
        with alarm():
            code = main(argv, Environment(stdout=out, stderr=err, environ={}))
        yield command, Outcome(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize(
    "rel",
    [
        "proc/irq/24/smp_affinity_list",
        "proc/irq/24/effective_affinity_list",
        "proc/irq/24/node",
        "sys/kernel/irq/24/chip_name",
        "sys/kernel/irq/24/actions",
        "proc/irq/default_smp_affinity",
        "proc/cmdline",
        "proc/sys/kernel/osrelease",
        "sys/devices/system/cpu/possible",
        "dev/cpu/0/cpuid",
    ],
)
def test_a_fifo_is_a_per_file_note_never_a_hang(tree, tmp_path, rel):
    root = tree("cloud-hypervisor-320")
    make_fifo(root, rel)
    for command, result in commands(root, tmp_path):
        assert result.returncode in (0, 1), (command, result.stderr)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
        by_irq = rows(result)
        assert by_irq[4]["status"] in ("changed", "would-change")  # the others go on
        if rel == "proc/irq/24/smp_affinity_list" and command == "audit":
            assert by_irq[24]["status"] == "failed"
            assert "smp_affinity_list: is a FIFO, not a regular file" in by_irq[24]["detail"]


@pytest.mark.parametrize("rel", ["proc/cpuinfo", "sys/devices/system/cpu/online"])
def test_a_fifo_as_a_required_file_is_one_line_exit_2(tree, tmp_path, rel):
    root = tree("cloud-hypervisor-320")
    make_fifo(root, rel)
    for _, result in commands(root, tmp_path):
        if rel == "proc/cpuinfo":
            assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
            assert "proc/cpuinfo: is a FIFO, not a regular file" in result.stderr
        else:  # online is optional: cpuinfo lists the CPUs
            assert result.returncode in (0, 1, 2) and "Traceback" not in result.stderr


def test_a_fifo_as_proc_interrupts_on_an_old_kernel(tree, tmp_path):
    root = tree("old-kernel")
    make_fifo(root, "proc/interrupts")
    for _, result in commands(root, tmp_path):
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr


def test_the_daemon_with_a_fifo_passes_and_stops_on_sigterm(tree, tmp_path):
    root = tree("cloud-hypervisor-320")
    make_fifo(root, "proc/irq/24/smp_affinity_list")
    make_fifo(root, "proc/irq/default_smp_affinity")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", str(tmp_path / "s"), "--no-uevents"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + HANG
        while read(root, "proc/irq/4/smp_affinity_list") != "0-255":
            assert time.monotonic() < deadline and daemon.poll() is None, "no pass"
            time.sleep(0.05)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=HANG) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert "IRQ 24" in daemon.stderr.read()  # reported once, per IRQ


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
@pytest.mark.parametrize(
    "rel", ["proc/irq/24/smp_affinity_list", "proc/cpuinfo", "sys/kernel/irq/24/chip_name", "dev/cpu/0/cpuid"]
)
def test_a_device_is_refused_without_reading_it(tree, tmp_path, rel):
    """/dev/zero as a kernel file cost 1 GB before the old 1 GiB read cap answered."""
    root = tree("cloud-hypervisor-320")
    make_zero_device(root, rel)
    for _, result in commands(root, tmp_path):
        if rel == "proc/cpuinfo":
            assert result.returncode == 2 and "is a character device, not a regular file" in result.stderr
        else:
            assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    if rel == "dev/cpu/0/cpuid":  # a device, but not the cpuid driver's
        facts = KernelTree(root).collect()
        assert facts.cpuid is None and "is character device 1:5, not a text file or device 203:N" in facts.cpuid_note


def test_symlinks_to_endless_files_are_not_followed(tree, tmp_path):
    root = tree("cloud-hypervisor-320")
    path = os.path.join(root, "proc/irq/24/smp_affinity_list")
    os.remove(path)
    os.symlink("/dev/zero", path)
    result = next(commands(root, tmp_path))[1]
    assert result.returncode in (0, 1)
    assert "is a symbolic link, not a regular file" in rows(result)[24]["detail"]


def test_oversized_files_cost_little_memory_and_are_refused(tree, tmp_path):
    """A mask file needs at most 96 KB even at 32,768 CPUs: one of 64 MiB is refused after
    reading 1 MiB + 1 byte, so the agent's memory stays small."""
    root = tree("cloud-hypervisor-320")
    with open(os.path.join(root, "proc/irq/24/smp_affinity_list"), "wb") as handle:
        handle.truncate(64 << 20)  # sparse: 64 MiB of zeros
    probe = (
        "from irqagent.kernel import KernelTree; "
        f"f = KernelTree({root!r}).collect(); "
        "irq = next(i for i in f.irqs if i.irq == 24); print(irq.read_error); "
        # VmHWM (peak RSS) of this program; ru_maxrss would count the forked test process
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=HANG, check=True
    )
    error, maxrss_kib = result.stdout.splitlines()
    assert "is larger than 1048576 bytes: not read" in error
    assert int(maxrss_kib) < 80 << 10


HUGE = "9" * 5000  # beyond Python's 4,300-digit int() limit


@pytest.mark.parametrize(
    "rel, text",
    [
        ("proc/irq/24/smp_affinity_list", HUGE),
        ("proc/irq/24/smp_affinity_list", f"0-{HUGE}"),
        ("proc/irq/24/smp_affinity_list", "0-16777215:1/1"),
        ("proc/irq/24/smp_affinity_list", "0-200000000:1/2"),
        ("proc/irq/24/smp_affinity", "f" * 5000),
        ("proc/irq/24/effective_affinity_list", HUGE),
        ("proc/irq/24/node", HUGE),
        ("proc/irq/default_smp_affinity", "1," * 5000 + "1"),
        ("proc/cmdline", f"isolcpus={HUGE} nohz_full=0-16777215:1/1 irqaffinity=0-200000000:1/2"),
        ("proc/sys/kernel/osrelease", f"{HUGE}.{HUGE}.0"),
    ],
)
def test_huge_numbers_and_strides_in_kernel_files_are_per_item_errors(tree, cli, rel, text):
    root = tree("cloud-hypervisor-320")
    write(root, rel, text + "\n")
    started = time.monotonic()
    result = cli("audit", "--root", root, "--format", "json", "--config", "/dev/null")
    assert time.monotonic() - started < 10
    assert result.code in (0, 1), result.err
    assert "internal error" not in result.err
    by_irq = {row["irq"]: row for row in result.json()["irqs"]}
    assert by_irq[4]["status"] == "would-change"  # one bad IRQ file never stops the others
    if rel == "proc/irq/24/smp_affinity_list":
        assert by_irq[24]["status"] == "failed" and "implausibly large" in by_irq[24]["detail"]


@pytest.mark.parametrize(
    "rel, text",
    [
        ("proc/cpuinfo", f"processor : 0\napicid : {HUGE}\n"),
        ("proc/cpuinfo", f"processor : {HUGE}\napicid : 0\n"),
        ("sys/devices/system/cpu/online", HUGE),
        ("sys/devices/system/cpu/online", "0-16777215:1/1"),
        ("sys/devices/system/cpu/possible", "0-16777215:1/1"),
        ("sys/devices/system/cpu/possible", f"0-{HUGE}"),
        ("dev/cpu/0/cpuid", f"0x40000000 0 {HUGE} 0 0 0"),
    ],
)
def test_huge_numbers_in_required_files_are_one_line_exit_2(tree, cli, rel, text):
    root = tree("live-kvm-2cpu")
    write(root, rel, text + "\n")
    result = cli("audit", "--root", root)
    assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    assert "internal error" not in result.err and ("implausibly large" in result.err or "expected six" in result.err)


def test_binary_reads_are_bounded_and_regular_files_only(tmp_path):
    """``read_bytes_optional`` (ACPI tables): the bytes, or None -- never a hang or a huge read."""
    os.makedirs(tmp_path / "sys/firmware/acpi/tables")
    table = tmp_path / "sys/firmware/acpi/tables/APIC"
    table.write_bytes(b"APIC" + bytes(range(256)) * 4)
    tree = KernelTree(str(tmp_path))
    assert tree.read_bytes_optional("sys/firmware/acpi/tables/APIC", 4096) == (b"APIC" + bytes(range(256)) * 4, "")
    assert "sys/firmware/acpi/tables/APIC" in tree.accessed
    assert tree.read_bytes_optional("sys/firmware/acpi/tables/APIC", 1000)[0] is None  # larger than asked
    os.mkfifo(tmp_path / "sys/firmware/acpi/tables/DMAR")
    with alarm():
        assert tree.read_bytes_optional("sys/firmware/acpi/tables/DMAR")[0] is None
    assert tree.read_bytes_optional("sys/firmware/acpi/tables/absent")[0] is None


def test_a_boot_line_beyond_64_kib_is_not_read(tree):
    """x86's COMMAND_LINE_SIZE is 2,048 (bootconfig adds at most 32 KiB): 1 MiB of distinct
    stride values would cost seconds on a 32,768-CPU guest."""
    root = tree("cloud-hypervisor-320")
    write(root, "proc/cmdline", "isolcpus=1 " + "x" * (64 << 10) + "\n")
    reader = KernelTree(root)
    assert reader.collect().cmdline == "" and "proc/cmdline" not in reader.accessed
    write(root, "proc/cmdline", "isolcpus=1 " + "x" * 60000 + "\n")
    reader = KernelTree(root)
    assert reader.collect().cmdline.startswith("isolcpus=1 ") and "proc/cmdline" in reader.accessed
