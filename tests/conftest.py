"""Shared test helpers: fixture trees, the CLI in-process and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from typing import List, Optional, Union

import pytest

from irqagent.cli import Environment, main

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def pytest_runtest_setup(item):
    """Tests marked ``live`` or ``root`` need root: skipped (not failed) without it."""
    if not IS_ROOT and any(item.get_closest_marker(name) for name in ("live", "root")):
        pytest.skip("needs root")


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def no_machine_config(monkeypatch, tmp_path):
    """The machine's own /etc/irqagent/irqagent.toml never leaks into a test (in-process or subprocess)."""
    monkeypatch.setenv("IRQAGENT_CONFIG", str(tmp_path / "no-such-config.toml"))


def copy_fixture(name: str, dest: str) -> str:
    """Copy tests/fixtures/NAME to DEST and give its files their recorded modes."""
    shutil.copytree(os.path.join(FIXTURES, name), dest, symlinks=True)
    manifest = os.path.join(dest, "MODES")
    with open(manifest) as handle:
        for line in handle:
            if line.strip():
                mode, rel = line.split(None, 1)
                os.chmod(os.path.join(dest, rel.strip()), int(mode, 8))
    return dest


REAL_GUESTS = os.path.join(FIXTURES, "real-guests")


def unpack_real_guest(name: str, dest: str) -> str:
    """Unpack tests/fixtures/real-guests/NAME.tar.gz under DEST (file modes kept); return the root."""
    with tarfile.open(os.path.join(REAL_GUESTS, f"{name}.tar.gz")) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="tar")  # keep modes, refuse absolute paths and links out
        else:
            archive.extractall(dest)
    return os.path.join(dest, name)


@pytest.fixture(scope="session")
def real_guest(tmp_path_factory):
    """``real_guest("R1")`` -> a read-only-by-convention root of that real capture (unpacked once per session)."""
    unpacked = {}

    def get(name: str) -> str:
        if name not in unpacked:
            unpacked[name] = unpack_real_guest(name, str(tmp_path_factory.mktemp(name)))
        return unpacked[name]

    return get


@pytest.fixture
def tree(tmp_path):
    """``tree("cloud-hypervisor-320")`` -> path of a private, writable copy of that fixture."""

    def make(name: str) -> str:
        return copy_fixture(name, str(tmp_path / name))

    return make


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(tmp_path):
    """Run the real CLI in-process: ``cli("audit", "--root", root)``."""

    def run(*args: str, state_dir: Optional[str] = None, environ=None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        argv: List[str] = list(args)
        if state_dir is None and args and args[0] in ("audit", "apply", "restore") and "--state-dir" not in args:
            argv += ["--state-dir", str(tmp_path / "state")]
        code = main(argv, Environment(stdout=out, stderr=err, environ=environ or {}))
        return Result(code, out.getvalue(), err.getvalue())

    return run


def run_process(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """The CLI as users run it: a separate Python process."""
    return subprocess.run(
        [sys.executable, "-m", "irqagent", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs
    )


def read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel)) as handle:
        return handle.read().strip()


def write(root: str, rel: str, content: Union[str, bytes]) -> None:
    """Replace a file of a private tree copy, keeping its mode (0444 too: root ignores it, others may not)."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = os.stat(path).st_mode if os.path.exists(path) else None
    if mode is not None and not mode & stat.S_IWUSR:
        os.chmod(path, mode | stat.S_IWUSR)
    with open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
    if mode is not None:
        os.chmod(path, mode)


def make_facts(
    cpus=4,
    apic_ids=None,
    irqs=(),
    kernel="6.1.0",
    cpuid=None,
    online=None,
    possible=None,
    cmdline="",
    default_affinity=None,
    numa_nodes=None,
    apic_base=None,
    x2apic_capable=True,
    present=None,
    **platform_files,
):
    """Facts without files: ``irqs`` holds IrqFacts or (irq, chip, affinity[, writable]) tuples;
    ``apic_base``: IA32_APIC_BASE (None: unreadable); ``present``: mask (default: every CPU 0..cpus-1);
    other keywords are PlatformFiles fields (madt, dmi, vmbus, acpi_tables, fadt_flags)."""
    from irqagent.facts import Facts, IrqFacts, PlatformFiles
    from irqagent.topology import Topology

    apic_ids = list(apic_ids) if apic_ids is not None else list(range(cpus))
    online_mask = online if online is not None else (1 << cpus) - 1
    nr = possible or cpus
    topology = Topology(
        apic_ids={cpu: apic_ids[cpu] for cpu in range(cpus) if (online_mask >> cpu) & 1},
        online=online_mask,
        possible=(1 << nr) - 1,
        nr_cpu_ids=nr,
        x2apic_capable=x2apic_capable,
        present=present if present is not None else (1 << cpus) - 1,
    )
    built = []
    for item in irqs:
        if isinstance(item, IrqFacts):
            built.append(item)
            continue
        irq, chip, affinity, *rest = item
        built.append(
            IrqFacts(irq=irq, chip=chip, name=f"dev{irq}", affinity_text=affinity, writable=rest[0] if rest else True)
        )
    return Facts(
        root="/test",
        topology=topology,
        irqs=tuple(built),
        kernel=kernel,
        cmdline=cmdline,
        cpuid=cpuid,
        cpuid_cpu=0 if cpuid is not None else None,
        apic_base=apic_base,
        apic_base_note="" if apic_base is not None else "dev/cpu/0/msr does not exist",
        platform_files=PlatformFiles(**platform_files),
        default_affinity_text=default_affinity,
        numa_nodes=numa_nodes or {},
    )


def masks(root: str) -> dict:
    """Every affinity the agent may write in a tree, as text (``"default"`` for the default mask)."""
    found = {"default": read(root, "proc/irq/default_smp_affinity")}
    for name in os.listdir(os.path.join(root, "proc/irq")):
        if name.isdigit():
            found[int(name)] = read(root, f"proc/irq/{name}/smp_affinity_list")
    return found


def reset(root: str, saved: dict) -> None:
    """Put every mask of a tree back to ``saved`` (cheaper than copying the tree again)."""
    for key, text in saved.items():
        rel = "proc/irq/default_smp_affinity" if key == "default" else f"proc/irq/{key}/smp_affinity_list"
        if read(root, rel) != text:
            write(root, rel, text + "\n")


# -- kill -9 at random moments of a real run (test_crash.py, test_reliability.py) --


def written_in_order(before, after):
    """The mask files the run writes, in the order it writes them (IRQ order), each with the text
    it holds before."""
    irqs = sorted(key for key in after if key != "default" and after[key] != before[key])
    return [(f"proc/irq/{irq}/smp_affinity_list", before[irq]) for irq in irqs]


def wait_for_change(root, rel, text, process, limit=30.0):
    """Poll one mask file until the run changes it."""
    deadline = time.monotonic() + limit
    while read(root, rel) == text:
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def kill_at_random(process, root, order, rng):
    """SIGKILL at a seeded random moment: mostly during the writes -- as soon as a randomly drawn
    IRQ's write has landed, whatever the speed of the machine and its disk (each mask write of a
    file tree is fsynced) -- sometimes at any moment of the run."""
    if rng.random() < 0.8:
        wait_for_change(root, *rng.choice(order), process)
    else:
        time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def harness(tmp_path):
    """``harness(root, config=None, **options)`` -> a daemon_harness.Harness (the daemon's loop
    in-process on a fake clock) whose state directory is tmp_path/state."""
    from daemon_harness import Harness

    def make(root, config=None, **options):
        return Harness(root, str(tmp_path / "state"), config, **options)

    return make
