"""The daemon under storms: uevents (in-process on a fake clock, see ``daemon_harness``, and
real ones as root), SIGHUPs, and EBUSY from the kernel."""

import collections
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, read, write
from daemon_harness import CPU_EVENT, IRRELEVANT, LOST, MADT, NET_EVENT, ebusy_once_tree

from irqagent import daemon as daemon_mod
from irqagent.config import Config, DaemonSettings, load_config
from irqagent.journal import StateLock
from irqagent.notify import Notifier

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CPU_UEVENTS = [f"/sys/devices/system/cpu/cpu{n}/uevent" for n in (1, 0)]
CPU_UEVENT = next((path for path in CPU_UEVENTS if os.path.exists(path)), None)
GUEST = "cloud-hypervisor-320"  # IO-APIC IRQs 1, 4, 8, 9, 12 on CPUs 0-319 reach APIC IDs 0-255 only


class Notifications:
    """A NOTIFY_SOCKET whose messages are kept with their arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.running = True
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        while self.running:
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data))

    def passes(self, since=0.0, until=float("inf")):
        """Arrival times of the STATUS= messages (one per pass) in [since, until)."""
        return [when for when, data in list(self.messages) if "STATUS=" in data and since <= when < until]

    def wait_for(self, wanted, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(wanted in data for _, data in list(self.messages)):
                return
            time.sleep(0.01)
        raise AssertionError(f"no {wanted!r}")

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def start(tmp_path):
    """start(root) -> (process, notifications, log()): ``irqagent run`` with the kernel's uevents."""
    started = []

    def run(root):
        config = tmp_path / "irqagent.toml"
        config.write_text("")
        notes = Notifications(str(tmp_path / "notify.sock"))
        log_path = tmp_path / "daemon.log"
        args = ["run", "--root", root, "--state-dir", str(tmp_path / "state"), "--config", str(config)]
        command = [sys.executable, "-m", "irqagent", *args, "--interval", "60"]
        log = open(log_path, "w")
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        started.append((process, notes, log))
        notes.wait_for("READY=1")
        return process, notes, lambda: log_path.read_text()

    yield run
    for process, notes, log in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        notes.close()
        log.close()


@pytest.mark.live  # writes this machine's /sys/devices/system/cpu/cpuN/uevent
@pytest.mark.skipif(not IS_ROOT or CPU_UEVENT is None, reason="needs root and /sys/devices/system/cpu/cpuN/uevent")
def test_enobufs_from_the_real_uevent_socket_is_reported_as_lost_events(tmp_path):
    settings = daemon_mod.Settings("/", str(tmp_path / "state"), None, None, None)
    with StateLock(settings.state_dir) as locked:
        agent = daemon_mod.Daemon(settings, Config(), daemon_mod.Log(io.StringIO(), False), Notifier(None), {}, locked)
    agent.uevents = agent.open_uevents()
    try:
        agent.uevents.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        with open(CPU_UEVENT, "w") as handle:
            for _ in range(200):
                handle.write("change")
                handle.flush()
        relevant, lost = agent.drain_uevents()
        assert lost
        agent.uevents.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        with open(CPU_UEVENT, "w") as handle:
            handle.write("change")
        assert select.select([agent.uevents], [], [], 10)[0]
        relevant, lost = agent.drain_uevents()
        assert relevant >= 1 and not lost  # the socket goes on after the overflow (other uevents may come too)
    finally:
        agent.uevents.close()


@pytest.mark.live  # writes this machine's /sys/devices/system/cpu/cpuN/uevent
@pytest.mark.skipif(not IS_ROOT or CPU_UEVENT is None, reason="needs root and /sys/devices/system/cpu/cpuN/uevent")
def test_a_real_storm_of_10000_uevents(tree, start):
    """10,000 `change` writes in a tight loop: the kernel's queue overflows (ENOBUFS), the
    daemon keeps running, passes during the storm, and is correct afterwards."""
    root = tree("cloud-hypervisor-320")
    process, notes, log = start(root)
    assert "no uevents" not in log()
    write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
    began = time.monotonic()
    with open(CPU_UEVENT, "w") as handle:
        for _ in range(10000):
            handle.write("change")
            handle.flush()
    ended = time.monotonic()
    time.sleep(max(0.0, began + 2.5 - time.monotonic()))  # max_delay (2 s) after the first event
    assert process.poll() is None, log()
    assert notes.passes(since=began, until=max(ended, began + 2.5)), "no pass during the storm"
    write(root, "proc/irq/8/smp_affinity_list", "0-319\n")  # after the storm: one more event
    with open(CPU_UEVENT, "w") as handle:
        handle.write("change")
    deadline = time.monotonic() + 5
    while read(root, "proc/irq/8/smp_affinity_list") != "0-255":
        assert time.monotonic() < deadline, log()
        time.sleep(0.02)
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert log().count("uevents were lost") <= 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


# -- in-process, on a fake clock ---------------------------------------------------------------------------------

STORM_RATE = 430  # relevant uevents per second, as in the report of the storm issue (#13)


def storm_config(debounce=0.5, max_delay=2.0):
    return Config(daemon=DaemonSettings(debounce=debounce, max_delay=max_delay))


# 0.01 s: a small guest's pass; 1.3 s: a pass on 32,768 vCPUs and 16,384 IRQs (README, Scale), longer than debounce
@pytest.mark.parametrize("pass_cost", [0.01, 1.3])
def test_a_storm_gets_a_pass_at_once_then_one_every_max_delay_then_one_after_it(tree, harness, pass_cost):
    root = tree(GUEST)
    h = harness(root, storm_config(debounce=0.5, max_delay=2.0), pass_cost=pass_cost)
    began, count = 10.0, 10 * STORM_RATE
    times = [began + n / STORM_RATE for n in range(count)]
    for when in times:
        h.send_at(when, NET_EVENT)
        h.send_at(when, IRRELEVANT)
    ended = times[-1]
    h.at(ended - 0.01, lambda: write(root, "proc/irq/4/smp_affinity_list", "0-319\n"))  # a change late in the storm
    h.send_at(40.0, CPU_EVENT)  # a quiet period, then one event
    h.stop_at(50)
    assert h.run() == 0

    during = h.pass_times(since=began, until=ended + 1e-9)
    after = h.pass_times(since=ended + 1e-9, until=40.0)
    assert during[0] == began  # leading edge: the first event's pass starts when it is read
    for earlier, later in zip(during, during[1:]):
        assert later - earlier >= 2.0  # coalesced: passes start at least max_delay apart...
        assert later - (earlier + pass_cost) <= 2.0 + 1 / STORM_RATE  # ...and one comes every max_delay
    assert ended - during[-1] <= pass_cost + 2.0 + 1 / STORM_RATE  # to its end
    assert len(during) <= (ended - began) / 2.0 + 1
    assert len(after) == 1  # the trailing pass: nothing is lost...
    assert after[0] - ended <= pass_cost + 0.5  # ...within debounce of the last event, or of the pass it waited for
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert h.pass_times(since=40.0) == [40.0]  # after a quiet period, at once again


def test_bursts_apart_get_a_pass_each_and_a_burst_one_more_only_if_it_outlasts_the_first(tree, harness):
    h = harness(tree(GUEST), storm_config(debounce=0.5, max_delay=2.0))
    h.send_at(10.0, CPU_EVENT)  # a single event: one pass
    for n in range(5):  # a hot-plug: several events within 40 ms
        h.send_at(20.0 + n * 0.01, CPU_EVENT)
    h.stop_at(30)
    assert h.run() == 0
    assert h.pass_times(since=1) == [10.0, 20.0, 20.54]  # the burst's trailing pass: debounce after its last event


def test_lost_events_are_logged_once_per_storm_and_answered_with_a_full_pass(tree, harness):
    root = tree(GUEST)
    h = harness(root, storm_config(debounce=0.3, max_delay=1.0))
    h.at(10, lambda: write(root, "proc/irq/4/smp_affinity_list", "0-319\n"))
    for n in range(50):
        h.send_at(10 + n * 0.001, LOST)  # only losses: no event says what changed
        h.send_at(10 + n * 0.001, IRRELEVANT)
    h.send_at(20, LOST)  # after a quiet period: a new storm
    h.stop_at(30)
    assert h.run() == 0
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert h.log().count("warning: uevents were lost (ENOBUFS: the kernel's queue overflowed): full pass") == 2
    assert h.pass_times(since=1)[0] == 10.0 and h.pass_times(since=19) == [20.0]
    assert all(MADT in tree.accessed for tree in h.daemon.pass_trees)  # a CPU event may have been lost


def test_a_sighup_storm_logs_each_outcome_once(tree, harness, tmp_path):
    config = tmp_path / "irqagent.toml"
    config.write_text("[daemon]\ndebounce = 0.5\n")
    h = harness(tree("live-kvm-2cpu"), load_config(str(config), explicit=True), config_path=str(config))
    for n in range(300):
        h.signal_at(1 + n * 0.002, signal.SIGHUP)
    h.at(2, lambda: config.write_text("[daemon\n"))  # broken: refused, old config kept
    for n in range(300):
        h.signal_at(3 + n * 0.002, signal.SIGHUP)
    h.at(4, lambda: config.write_text("[daemon]\ndebounce = 0.2\n"))  # a real change
    for n in range(300):
        h.signal_at(5 + n * 0.002, signal.SIGHUP)
    h.stop_at(10)
    assert h.run() == 0
    text = h.log()
    assert text.count("configuration reloaded (unchanged)") == 1
    assert text.count("reload refused, keeping the running config") == 1
    assert text.count("configuration reloaded\n") == 1
    assert h.daemon.state.config.daemon.debounce == 0.2


def test_ebusy_is_retried_and_counters_count_what_happened(tree, harness, tmp_path):
    """IRQ 4 answers EBUSY once, then takes the write; IRQ 8 always answers EINVAL."""
    attempts = []
    Busy = ebusy_once_tree(attempts)  # IRQ 4: EBUSY once, then the write; IRQ 8: always EINVAL

    metrics = tmp_path / "irqagent.prom"
    h = harness(tree(GUEST), tree_class=Busy, interval=10, metrics=str(metrics))
    h.signal_at(25, signal.SIGUSR1)
    h.stop_at(30)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (10.0, "retry"), (25.0, "SIGUSR1")]
    assert attempts.count(4) == 2 and attempts.count(8) == 1  # EINVAL is not retried
    first = h.notes.texts()[0]
    assert first.startswith("STATUS=") and "failed" in first
    text = metrics.read_text()
    assert 'irqagent_write_failures_total{errno="EBUSY"} 1\n' in text
    assert 'irqagent_write_failures_total{errno="EINVAL"} 1\n' in text  # not once per pass
    assert h.log().count("IRQ 8") == 1


def test_the_latency_benchmark_runs_and_says_what_it_measured():
    """benchmarks/latency.py (one short round; the figures themselves are README's, from full runs)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/latency.py", "--runs", "2", "--storm", "0.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: p99 over 50 ms (a loaded machine); not judged here
    lines = result.stdout.splitlines()
    assert lines[0] == "$ python3 benchmarks/latency.py --runs 2 --storm 0.5"
    assert lines[3].startswith("uevent -> pass start, 2 runs, each after a quiet period: min ")
    assert lines[5].startswith("storm: ") and re.search(r"; 1 after it \(", lines[5]), lines[5]


def test_the_first_event_of_a_burst_already_queued_starts_its_pass_before_the_rest_is_read(tree, harness):
    """2,000 uevents queued at once, each taking 0.1 ms to read (0.2 s for all): the pass starts after the
    first (well within 50 ms), the rest is read after it and gets the burst's trailing pass."""
    h = harness(tree(GUEST), storm_config(debounce=0.5, max_delay=2.0), read_cost=0.0001)

    def burst():
        for _ in range(2000):
            h.source.send(NET_EVENT)

    h.at(10.0, burst)
    h.stop_at(20)
    assert h.run() == 0
    first, trailing = h.pass_times(since=1)
    assert first - 10.0 <= 0.05
    assert trailing > first + 0.2  # after the rest was read
    assert h.source.queue == collections.deque()  # and all of it was read
