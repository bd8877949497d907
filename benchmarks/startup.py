#!/usr/bin/env python3
"""Start-up cost of the CLI against the interpreter's own: ``python3 -c pass``,
``irqagent --version`` and ``irqagent audit`` (of this machine by default), run side by
side (one of each per round, so that load on the machine hits all three alike), and the
minimum of N runs of each, which is the cost without interference.  ``irqagent`` is the
console script exactly as pip writes it (``import re, sys; from irqagent.cli import
main``...), run by the chosen interpreter on this checkout.

    python3 benchmarks/startup.py [--runs 20] [--root /] [--python /usr/bin/python3]

The checkout is byte-compiled first (an installed package is; with
``PYTHONDONTWRITEBYTECODE`` set, every run would otherwise compile the sources again).
Targets (issue #15): ``--version`` at most 2x and the audit at most 4x the time of
``python3 -c pass``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pip's console-script template (pip/_vendor/distlib/scripts.py) for irqagent = "irqagent.cli:main"
CONSOLE_SCRIPT = """\
# -*- coding: utf-8 -*-
import re
import sys
from irqagent.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""
TARGETS = {"version": 2.0, "audit": 4.0}
LABELS = {
    "uevents": "daemon's uevent socket: irqagent.uevents",
    "pyroute2": "the same by import pyroute2.netlink.uevent",
}


def wall_time(command, env) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(command)}: exit {result.returncode}: {result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    parser.add_argument("--root", default="/", help="root of the audit (default /, this machine)")
    parser.add_argument("--python", default=sys.executable, help="interpreter (default: the one running this)")
    options = parser.parse_args()

    compileall.compile_dir(os.path.join(REPO, "irqagent"), quiet=1)
    env = dict(os.environ, PYTHONPATH=REPO)
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "irqagent")
        with open(script, "w") as handle:
            handle.write(CONSOLE_SCRIPT)
        state = os.path.join(scratch, "state")  # empty: the audit reads no journal, as before a first apply
        commands = {
            "pass": [options.python, "-c", "pass"],
            "version": [options.python, script, "--version"],
            "audit": [options.python, script, "audit", "--root", options.root, "--state-dir", state],
            # what the daemon pays for kernel uevents, against the plain import of the same class
            "uevents": [
                options.python,
                "-c",
                "from irqagent.uevents import uevent_socket_class; uevent_socket_class()",
            ],
            "pyroute2": [options.python, "-c", "from pyroute2.netlink.uevent import UeventSocket"],
        }
        for command in commands.values():  # warm the page cache
            wall_time(command, env)
        best = {name: float("inf") for name in commands}
        for _ in range(options.runs):
            for name, command in commands.items():
                best[name] = min(best[name], wall_time(command, env))

    python = subprocess.run([options.python, "-V"], capture_output=True, text=True).stdout.strip()
    pyroute2 = subprocess.run(
        [options.python, "-c", "from importlib.metadata import version; print(version('pyroute2'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"$ python3 benchmarks/startup.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"{python}, pyroute2 {pyroute2}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"minimum of {options.runs} runs each, side by side")
    print(f"{'command':<52} {'ms':>7} {'ratio':>6} {'target':>7}")
    base = best["pass"]
    failed = []
    for name, command in commands.items():
        names = {options.python: "python3", script: "irqagent", state: "EMPTY"}
        words = [names.get(word, word) for word in command]
        shown = LABELS.get(name) or shlex.join(words[1:] if words[1] == "irqagent" else words)
        ratio = best[name] / base
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            mark = f"<= {target:g}x" + ("" if ratio <= target else " (!)")
            if ratio > target:
                failed.append(name)
        print(f"{shown:<52} {best[name] * 1000:7.1f} {ratio:6.2f} {mark:>7}".rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
