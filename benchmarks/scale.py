"""Scale benchmark: audit and apply against the cost of reading the same files once.

    python3 benchmarks/scale.py                       # 256, 1024, 4096, 32768 CPUs
    python3 benchmarks/scale.py --sizes 256 1024      # a quicker run
    python3 benchmarks/scale.py --keep /tmp/trees     # keep (and reuse) the generated trees

For each size it generates a synthetic KVM guest that real Linux can produce (Debian 6.12,
the extended destination ID, every vCPU online, the MADT listing them all), with
full-format /proc/cpuinfo and IRQs scaled up to 16,384 that all target every CPU; the
operator keeps interrupts off CPU 0 (``[policy] exclude_cpus = "0"``), so every IRQ needs
a write.  Then it measures in one run:

* floor   -- a plain Python loop that opens and reads every file the audit reads
             (the list comes from the agent itself), nothing else;
* audit   -- ``irqagent audit`` in-process (read + model + plan + report), best of 3;
* apply   -- the first ``irqagent apply`` (journal + every write + read-back), then a
             second one (must write nothing);
* RSS     -- peak RSS of ``python3 -m irqagent audit --root TREE -q`` in a child process;
* check   -- the daemon's periodic check (re-read every affinity file, compare with the
             state after the last pass), and its share of one CPU at the default 60 s
             interval.

Times are wall seconds with a warm page cache (each tree is read once before timing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from irqagent import runner  # noqa: E402
from irqagent.config import Config, Policy  # noqa: E402
from irqagent.devtools.gentree import TreeSpec, guest_irqs, write_tree  # noqa: E402
from irqagent.journal import JournalStore  # noqa: E402
from irqagent.kernel import KernelTree  # noqa: E402

KERNEL = "6.12.118+deb13-amd64"
CONFIG = Config(policy=Policy(exclude_cpus=0b1))  # keep interrupts off CPU 0: every IRQ is rewritten


def irqs_for(cpus: int) -> int:
    return min(16384, max(64, cpus // 2))


def build(root: str, cpus: int) -> None:
    if os.path.exists(os.path.join(root, "proc", "cpuinfo")):
        return
    spec = TreeSpec(
        cpus=cpus,
        kernel=KERNEL,
        hypervisor="kvm",
        ext_dest_id=True,
        irqs=guest_irqs(cpus, irqs_for(cpus), KERNEL),
        dmi={"sys_vendor": "QEMU"},
    )
    write_tree(spec, root)


def floor_loop(root: str, files) -> float:
    start = time.perf_counter()
    for rel in files:
        with open(os.path.join(root, rel), "rb") as handle:
            handle.read()
    return time.perf_counter() - start


def best_of(count: int, function) -> float:
    best = float("inf")
    for _ in range(count):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def child_peak_rss_mib(root: str) -> float:
    """Peak RSS of an audit in a child process, as the child's own VmHWM: that of its
    address space since exec (``ru_maxrss`` would also count the pages a forked child
    shared with this process, however big it has grown, and keep the largest child's)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['irqagent', 'audit', '--root', {root!r}, '-q', '--config', '/dev/null',"
        " '--state-dir', '/nonexistent']\n"
        "try:\n    runpy.run_module('irqagent', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return int(result.stdout.split()[-1]) / 1024  # kB


def measure(base: str, cpus: int):
    root = os.path.join(base, f"kvm-{cpus}")
    build(root, cpus)
    rss = child_peak_rss_mib(root)
    tree = KernelTree(root)
    runner.audit(tree, CONFIG)  # warm the page cache; learn the files read
    files = sorted(rel for rel in tree.accessed if os.path.isfile(os.path.join(root, rel)))
    floor = min(floor_loop(root, files) for _ in range(3))
    audit = best_of(3, lambda: runner.audit(KernelTree(root), CONFIG))
    work = os.path.join(base, f"apply-{cpus}")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(root, work, symlinks=True)
    state = tempfile.mkdtemp(prefix="irqagent-bench-")
    start = time.perf_counter()
    first = runner.apply(KernelTree(work), CONFIG, JournalStore(state))
    apply_first = time.perf_counter() - start
    start = time.perf_counter()
    second = runner.apply(KernelTree(work), CONFIG, JournalStore(state))
    apply_second = time.perf_counter() - start
    check = best_of(3, lambda: KernelTree(work).affinity_texts())
    shutil.rmtree(work)
    shutil.rmtree(state)
    return {
        "cpus": cpus,
        "irqs": irqs_for(cpus),
        "files": len(files),
        "floor": floor,
        "audit": audit,
        "ratio": audit / floor,
        "apply1": apply_first,
        "writes1": first.writes,
        "apply2": apply_second,
        "writes2": second.writes,
        "rss": rss,
        "check": check,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 32768])
    parser.add_argument("--keep", metavar="DIR", help="generate trees here and keep them (reused when present)")
    args = parser.parse_args()
    base = args.keep or tempfile.mkdtemp(prefix="irqagent-scale-")
    os.makedirs(base, exist_ok=True)
    header = (
        f"{'CPUs':>6} {'IRQs':>6} {'files':>6} {'floor s':>8} {'audit s':>8} {'ratio':>6} "
        f"{'apply1 s':>9} {'writes':>6} {'apply2 s':>9} {'writes':>6} {'RSS MiB':>8} {'check s':>8} {'check %':>8}"
    )
    print(header)
    print("-" * len(header))
    try:
        for cpus in args.sizes:
            r = measure(base, cpus)
            print(
                f"{r['cpus']:>6} {r['irqs']:>6} {r['files']:>6} {r['floor']:>8.3f} {r['audit']:>8.3f} "
                f"{r['ratio']:>6.2f} {r['apply1']:>9.3f} {r['writes1']:>6} {r['apply2']:>9.3f} {r['writes2']:>6} "
                f"{r['rss']:>8.1f} {r['check']:>8.3f} {100 * r['check'] / 60:>7.2f}%",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
