"""Memory of `irqagent run` under bursts of real kernel uevents: RSS after the first
minute against RSS at the end (default: 5 minutes of bursts).

    sudo nice python3 benchmarks/storm.py [--minutes 5] [--burst 2000] [--period 2]

Every PERIOD seconds it writes "change" BURST times, in a tight loop, to a uevent file;
each write makes the kernel send one uevent to the daemon.  By default the whole run
happens in a private network and mount namespace (unshare), and the uevents come from
that namespace's loopback device (`/sys/class/net/lo/uevent`, subsystem "net", which the
daemon acts on): other listeners on the machine see none of them.  `--cpu-uevents`
writes to /sys/devices/system/cpu/cpu0/uevent instead (seen by every listener).
The daemon runs on a copy of the cloud-hypervisor-320 fixture tree (`--root` to choose), so
nothing under the real /proc/irq is written.  Needs root.
"""

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LO_UEVENT = "/sys/class/net/lo/uevent"
CPU_UEVENT = "/sys/devices/system/cpu/cpu0/uevent"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PassCounter:
    """The daemon's NOTIFY_SOCKET: one STATUS= message per pass."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.passes = 0
        self.ready = threading.Event()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.passes += b"STATUS=" in data
            if b"READY=1" in data:
                self.ready.set()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def burst(path: str, count: int) -> None:
    with open(path, "w") as handle:
        for _ in range(count):
            handle.write("change")
            handle.flush()


def measure(args) -> int:
    work = tempfile.mkdtemp(prefix="irqagent-storm-")
    root = args.root or os.path.join(work, "tree")
    if not args.root:
        sys.path[:0] = [REPO, os.path.join(REPO, "tests")]  # this checkout's irqagent, and its fixtures
        from conftest import copy_fixture

        copy_fixture("cloud-hypervisor-320", root)
    counter = PassCounter(os.path.join(work, "notify.sock"))
    log_path = os.path.join(work, "daemon.log")
    command = [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", os.path.join(work, "state")]
    env = dict(os.environ, NOTIFY_SOCKET=os.path.join(work, "notify.sock"))
    source = CPU_UEVENT if args.cpu_uevents else LO_UEVENT
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not counter.ready.wait(30):
            raise SystemExit("the daemon did not get ready")
        shown = [word for word in sys.argv[1:] if word != "--inside"]
        print(f"$ python3 benchmarks/storm.py {shlex.join(shown)}".rstrip())
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start", flush=True)
        started = time.monotonic()
        total = args.minutes * 60
        samples = {}
        sent = 0
        next_burst = started
        for minute in range(1, int(args.minutes) + 1):
            while time.monotonic() < started + 60 * minute:
                if time.monotonic() >= next_burst:
                    burst(source, args.burst)
                    sent += args.burst
                    next_burst += args.period
                time.sleep(max(0.0, min(next_burst, started + 60 * minute) - time.monotonic()))
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}")
            samples[minute] = rss_kib(daemon.pid)
            print(f"after minute {minute}: RSS {samples[minute] / 1024:.1f} MiB, {counter.passes} passes", flush=True)
        first, last = samples[1], samples[max(samples)]
        with open(log_path) as handle:
            lost = sum("uevents were lost" in line for line in handle)
        print(
            f"{sent} uevents from {source} in bursts of {args.burst} every {args.period:g} s for "
            f"{total / 60:g} min: RSS {first / 1024:.1f} MiB after the first minute, {last / 1024:.1f} MiB "
            f"at the end ({(last - first) / 1024:+.2f} MiB); {counter.passes} passes; "
            f"event loss (ENOBUFS) logged {lost} times; the daemon still running"
        )
        return 0 if abs(last - first) <= 2048 else 1
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        counter.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5, help="length of the run (default 5)")
    parser.add_argument("--burst", type=int, default=2000, help="uevents per burst (default 2000)")
    parser.add_argument("--period", type=float, default=2, help="seconds between bursts (default 2)")
    parser.add_argument("--root", help="tree the daemon works on (default: a copy of cloud-hypervisor-320)")
    parser.add_argument("--cpu-uevents", action="store_true", help=f"write to {CPU_UEVENT}, in no namespace")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (uevent files are writable by root only)")
    if args.cpu_uevents or args.inside:
        return measure(args)
    # A private network namespace (its own loopback device and uevent audience) and a mount
    # namespace to mount that network namespace's view of sysfs.
    inner = "mount -t sysfs sysfs /sys && exec " + shlex.join(
        [sys.executable, os.path.abspath(__file__), "--inside", *sys.argv[1:]]
    )
    return subprocess.call(["unshare", "--net", "--mount", "sh", "-c", inner])


if __name__ == "__main__":
    sys.exit(main())
