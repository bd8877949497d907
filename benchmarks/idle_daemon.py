"""Measure the idle cost of `irqagent run`: CPU time over a window, and RSS.

    sudo python3 benchmarks/idle_daemon.py [--seconds 60] [--root /] [--interval 60]

Starts the daemon of this checkout (uevents on, the default config), waits for its
``READY=1`` (the first pass is done), then reads its CPU time before and after the window:
``/proc/PID/schedstat`` (nanoseconds on the CPU; the daemon is one thread) and, as a
cross-check, utime+stime from ``/proc/PID/stat`` (clock ticks of 10 ms), and its RSS
(``VmRSS``) at the end.  Passes in the window are counted from its ``STATUS=``
messages.  With ``--root /`` it is a normal `irqagent run` on the
live machine (it writes only masks that are not compliant; its journal goes to a
temporary state directory).
"""

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid: int) -> float:
    """utime + stime, in clock ticks."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """Time on the CPU in nanoseconds (/proc/PID/schedstat, first field), or -1."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


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
    work = tempfile.mkdtemp(prefix="irqagent-idle-")
    notify_path = os.path.join(work, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    config = os.path.join(work, "irqagent.toml")
    open(config, "w").close()  # the defaults, whatever /etc/irqagent holds
    command = [sys.executable, "-m", "irqagent", "run", "--root", args.root, "--state-dir", os.path.join(work, "state")]
    command += ["--config", config, "--interval", str(args.interval)]
    log_path = os.path.join(work, "daemon.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=dict(os.environ, NOTIFY_SOCKET=notify_path),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        notify.settimeout(60)
        while b"READY=1" not in notify.recv(65536):
            pass
        notify.setblocking(False)
        load = os.getloadavg()
        ticks, ns = cpu_seconds(proc.pid), cpu_ns(proc.pid)
        time.sleep(args.seconds)
        ticks, ns = cpu_seconds(proc.pid) - ticks, cpu_ns(proc.pid) - ns
        rss = rss_mib(proc.pid)
        passes = 0
        try:
            while True:
                passes += b"STATUS=" in notify.recv(65536)
        except BlockingIOError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {proc.returncode}")
        print(f"$ python3 benchmarks/idle_daemon.py {shlex.join(sys.argv[1:])}".rstrip())
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start of the window")
        precise = f"{ns / 1e6:.1f} ms CPU" if ns >= 0 else "CPU time"
        print(
            f"idle irqagent run on {args.root}, interval {args.interval:g}s: {precise} in {args.seconds:g} s "
            f"({100 * max(ns, 0) / 1e9 / args.seconds:.4f}% of one CPU; {ticks:.2f} s in clock ticks), "
            f"RSS {rss:.1f} MiB, {passes} passes after the first"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        notify.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
