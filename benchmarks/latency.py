#!/usr/bin/env python3
"""How fast `irqagent run` reacts: from a relevant uevent to the start of the pass it causes.

    python3 benchmarks/latency.py [--runs 100] [--burst 1] [--storm 10] [--source socket|kernel]

What runs: the daemon's real loop (``irqagent.daemon.Daemon.run``: the real clock, the
real ``select()``, the real uevent parsing and timing rules, the default ``debounce`` of
0.5 s and ``max_delay`` of 2 s), in this process's main thread, on a copy of the
cloud-hypervisor-320 fixture tree (12 IRQs; nothing under the real /proc/irq is written).
Another thread sends the uevents.

What is measured: from just before the uevent is handed over (the ``send()`` or
``write()`` call) to the entry of ``Daemon.run_pass`` (the pass starts: it reads the
tree next), both read from ``time.monotonic()`` in this one process.  Each run's event
comes after a quiet period of ``debounce`` + 0.1 s (no relevant uevent read, no pass),
so it is the first event of a burst (the leading edge, target: 50 ms); a run where the
daemon read another relevant uevent (the machine's own) less than ``debounce`` before the
benchmark's is left out, and counted.  With ``--burst N`` it is the first of N sent back to back (the daemon may read
several before its pass starts).  The pass's own duration is printed apart.

Sources of the uevent:

* ``socket`` (default, no root needed): a datagram socket pair stands for the kernel's
  netlink socket; the benchmark writes a kernel-format ``add@/devices/virtual/net/...``
  datagram (subsystem ``net``) to one end, the daemon reads the other.  What the kernel
  itself takes to deliver a uevent is not included.
* ``kernel`` (root): real kernel uevents on the daemon's real netlink socket (opened by
  ``irqagent.uevents``): the benchmark writes ``change`` to ``/sys/class/net/lo/uevent``
  inside a private network and mount namespace (``unshare``), so the kernel emits a
  ``change@/devices/virtual/net/lo`` uevent (subsystem ``net``) that only that namespace
  sees.  Uevents of the rest of the machine (cpu, block...) still reach the socket.

``--storm S`` then sends 430 relevant and 430 irrelevant uevents a second for S seconds
(the rate of issue #13's report) and prints when the passes came: the leading edge, one at
least every ``max_delay`` while it lasts, and one after it.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from irqagent import daemon as daemon_mod  # noqa: E402
from irqagent.config import Config  # noqa: E402
from irqagent.journal import StateLock  # noqa: E402
from irqagent.notify import Notifier  # noqa: E402

LO_UEVENT = "/sys/class/net/lo/uevent"
NET_EVENT = b"add@/devices/virtual/net/veth0\0ACTION=add\0DEVPATH=/devices/virtual/net/veth0\0SUBSYSTEM=net\0SEQNUM=1\0"
IRRELEVANT = (
    b"change@/devices/virtual/block/loop0\0ACTION=change\0DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0"
)
STORM_RATE = 430


class Timed(daemon_mod.Daemon):
    """The daemon, noting when each pass starts and ends, and when it read relevant uevents."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes: List[Tuple[float, float]] = []
        self.passed = threading.Condition()
        self.reads: List[float] = []

    def drain_uevents(self, first_relevant: bool = False) -> Tuple[int, bool]:
        relevant, lost = super().drain_uevents(first_relevant)
        if relevant or lost:
            with self.passed:
                self.reads.append(time.monotonic())
        return relevant, lost

    def run_pass(self, reason: str):
        started = time.monotonic()
        try:
            return super().run_pass(reason)
        finally:
            with self.passed:
                self.passes.append((started, time.monotonic()))
                self.passed.notify_all()

    def wait_quiet(self, seconds: float) -> None:
        """Until ``seconds`` have passed since the last relevant uevent read and the last pass."""
        while True:
            with self.passed:
                last = max([0.0] + self.reads[-1:] + [end for _, end in self.passes[-1:]])
            left = last + seconds - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    def wait_for_pass(self, since: float, timeout: float = 30.0) -> Optional[Tuple[float, float]]:
        """The first pass that started at ``since`` or later, once it is over."""
        with self.passed:
            self.passed.wait_for(lambda: any(start >= since for start, _ in self.passes), timeout)
            return next(((start, end) for start, end in self.passes if start >= since), None)


class SocketSource:
    """A datagram socket pair in place of the kernel's uevent socket."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.reader.setblocking(False)

    def open(self) -> socket.socket:
        return self.reader

    def relevant(self) -> None:
        self.writer.send(NET_EVENT)

    def irrelevant(self) -> None:
        self.writer.send(IRRELEVANT)


class KernelSource:
    """Real uevents: ``change`` written to this network namespace's loopback device."""

    def __init__(self) -> None:
        self.fd = os.open(LO_UEVENT, os.O_WRONLY)

    def open(self) -> socket.socket:
        from irqagent.uevents import open_kernel_uevents

        return open_kernel_uevents()

    def relevant(self) -> None:
        os.write(self.fd, b"change")

    def irrelevant(self) -> None:
        pass  # the rest of the machine sends those


def percentile(values: List[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def feed(agent: Timed, source, args, results: dict) -> None:
    """The other thread: one event per quiet period, then the storm, then stop."""
    try:
        quiet = agent.state.config.daemon.debounce + 0.1
        if agent.wait_for_pass(0.0) is None:
            raise RuntimeError("no start pass")
        latencies, durations, spoiled = [], [], 0
        for _ in range(args.runs):
            agent.wait_quiet(quiet)
            sent = time.monotonic()
            for _ in range(args.burst):
                source.relevant()
            found = agent.wait_for_pass(sent)
            if found is None:
                raise RuntimeError("no pass after a uevent within 30 s")
            if any(sent - agent.state.config.daemon.debounce < read < sent for read in agent.reads):
                spoiled += 1  # another relevant uevent came just before: this one was not after a quiet period
                continue
            latencies.append(found[0] - sent)
            durations.append(found[1] - found[0])
        if not latencies:
            raise RuntimeError("every run followed another relevant uevent")
        results["latencies"], results["durations"], results["spoiled"] = latencies, durations, spoiled
        if args.storm:
            agent.wait_quiet(quiet)
            began = time.monotonic()
            sent = 0
            while time.monotonic() < began + args.storm:
                source.relevant()
                source.irrelevant()
                sent += 1
                time.sleep(max(0.0, began + sent / STORM_RATE - time.monotonic()))
            ended = time.monotonic()
            time.sleep(agent.state.config.daemon.debounce + 1.0)
            results["storm"] = (began, ended, sent, [start for start, _ in agent.passes if start >= began])
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        results["error"] = exc
    finally:
        agent.request_stop()


def measure(args) -> int:
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from conftest import copy_fixture

    work = tempfile.mkdtemp(prefix="irqagent-latency-")
    try:
        root = copy_fixture("cloud-hypervisor-320", os.path.join(work, "tree"))
        source = KernelSource() if args.source == "kernel" else SocketSource()
        settings = daemon_mod.Settings(root, os.path.join(work, "state"), None, None, None)
        log = io.StringIO()
        load = os.getloadavg()
        with StateLock(settings.state_dir) as locked:
            agent = Timed(
                settings, Config(), daemon_mod.Log(log, False), Notifier(None), {}, locked, open_uevents=source.open
            )
            results: dict = {}
            feeder = threading.Thread(target=feed, args=(agent, source, args, results))
            feeder.start()
            agent.run()
            feeder.join()
        if "error" in results:
            print(log.getvalue(), file=sys.stderr)
            raise SystemExit(f"latency: {results['error']}")
        report(args, results, load)
        latencies = results["latencies"]
        return 0 if percentile(latencies, 0.99) <= 0.050 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, results: dict, load: Tuple[float, float, float]) -> None:
    import importlib.metadata

    shown = [word for word in sys.argv[1:] if word != "--inside"]
    print(f"$ python3 benchmarks/latency.py {shlex.join(shown)}".rstrip())
    try:
        pyroute2 = f", pyroute2 {importlib.metadata.version('pyroute2')}"
    except importlib.metadata.PackageNotFoundError:
        pyroute2 = ""
    print(
        f"Python {platform.python_version()}{pyroute2}, Linux {platform.release()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start"
    )
    if args.source == "kernel":
        print(f"uevent: `change` written to {LO_UEVENT} (a private network namespace), read by the daemon's socket")
    else:
        print("uevent: a kernel-format datagram on a socket pair standing for the kernel's netlink socket")
    latencies, durations = results["latencies"], results["durations"]
    burst = f"first of {args.burst} " if args.burst > 1 else ""
    print(
        f"{burst}uevent -> pass start, {len(latencies)} runs, each after a quiet period: min {ms(min(latencies))}, "
        f"median {ms(statistics.median(latencies))}, p99 {ms(percentile(latencies, 0.99))}, "
        f"max {ms(max(latencies))} (target: 50 ms)"
    )
    if results["spoiled"]:
        runs = "run" if results["spoiled"] == 1 else "runs"
        print(
            f"({results['spoiled']} more {runs} left out: another relevant uevent, not the benchmark's, "
            f"came less than debounce before)"
        )
    print(f"the pass itself (12 IRQs, nothing to write): median {ms(statistics.median(durations))}")
    if "storm" in results:
        began, ended, sent, starts = results["storm"]
        during = [s for s in starts if s <= ended]
        gaps = [later - earlier for earlier, later in zip(during, during[1:])]
        after = [s - ended for s in starts if s > ended]
        irrelevant = f" + {sent} irrelevant" if args.source == "socket" else ""
        print(
            f"storm: {sent} relevant{irrelevant} uevents in {ended - began:.1f} s: {len(during)} passes during it, "
            f"the first {ms(during[0] - began) if during else '-'} after its first event, "
            f"then {min(gaps) if gaps else 0:.2f}-{max(gaps) if gaps else 0:.2f} s apart; "
            f"{len(after)} after it ({', '.join(f'{a:.2f} s' for a in after)} after its last event)"
        )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="uevents, one per quiet period (default 100)")
    parser.add_argument("--burst", type=int, default=1, help="uevents sent back to back each run (default 1)")
    parser.add_argument("--storm", type=float, default=0, help="then a storm of this many seconds (default none)")
    parser.add_argument("--source", choices=("socket", "kernel"), default="socket", help="see above (default socket)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.burst < 1:
        parser.error("--runs and --burst must be at least 1")
    if args.source == "socket" or args.inside:
        return measure(args)
    if os.geteuid() != 0:
        parser.error("--source kernel needs root (uevent files are writable by root only)")
    # A private network namespace (its own loopback device and uevent audience) and a mount
    # namespace to mount that network namespace's view of sysfs.
    inner = "mount -t sysfs sysfs /sys && exec " + shlex.join(
        [sys.executable, os.path.abspath(__file__), "--inside", *sys.argv[1:]]
    )
    return subprocess.call(["unshare", "--net", "--mount", "sh", "-c", inner])


if __name__ == "__main__":
    sys.exit(main())
