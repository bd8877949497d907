"""Measure the idle cost of `irqagent run`: CPU time over a window, and RSS.

    sudo python3 benchmarks/idle_daemon.py [--seconds 60] [--root /] [--interval 60]

Starts the daemon (uevents on), waits for its first pass, then samples
/proc/PID/stat (utime+stime) and /proc/PID/status (VmRSS) before and after the window.
Applies to the live machine when --root is / (it is a normal `irqagent run`).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--root", default="/")
    parser.add_argument("--interval", type=float, default=60)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="irqagent-idle-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "irqagent",
            "run",
            "--root",
            args.root,
            "--state-dir",
            state,
            "--interval",
            str(args.interval),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # start-up and the first pass
        before = cpu_seconds(proc.pid)
        time.sleep(args.seconds)
        used = cpu_seconds(proc.pid) - before
        print(
            f"idle irqagent run on {args.root}, interval {args.interval:g}s: "
            f"{used:.2f} s CPU in {args.seconds:g} s ({100 * used / args.seconds:.3f}% of one CPU), "
            f"RSS {rss_mib(proc.pid):.1f} MiB"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
