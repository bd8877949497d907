"""The daemon under storms: uevents (fed through a socket the test controls, and real ones
as root), SIGHUPs, and EBUSY from the kernel."""

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from irqagent import daemon as daemon_mod
from irqagent.config import Config, DaemonSettings
from irqagent.kernel import KernelTree
from irqagent.journal import StateLock
from irqagent.notify import Notifier
from irqagent.render_prometheus import render_prometheus

from conftest import REPO, read, write

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CPU_UEVENTS = [f"/sys/devices/system/cpu/cpu{n}/uevent" for n in (1, 0)]
CPU_UEVENT = next((path for path in CPU_UEVENTS if os.path.exists(path)), None)
# The daemon with its uevent socket replaced by a datagram socket at a path the test writes to.
FAKE_UEVENTS = """
import socket, sys
from irqagent import cli, daemon

class Uevents(socket.socket):
    # a datagram LOST stands for the ENOBUFS of the kernel (its queue overflowed)

    def recv(self, size):
        data = super().recv(size)
        if data == b"LOST":
            raise OSError(105, "No buffer space available")
        return data


def open_uevents(self):
    sock = Uevents(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sys.argv[1])
    sock.setblocking(False)
    return sock

daemon.Daemon.open_uevents = open_uevents
sys.exit(cli.main(sys.argv[2:]))
"""
EVENT = b"change@/devices/system/cpu/cpu1\0ACTION=change\0DEVPATH=/devices/system/cpu/cpu1\0SUBSYSTEM=cpu\0SEQNUM=1\0"
IRRELEVANT = b"change@/devices/virtual/block/loop0\0ACTION=change\0SUBSYSTEM=block\0"


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
    """start(root, config_text, fake=True) -> (process, notifications, send(data), log())."""
    started = []

    def run(root, config_text="", fake=True):
        config = tmp_path / "irqagent.toml"
        config.write_text(config_text)
        notes = Notifications(str(tmp_path / "notify.sock"))
        log_path = tmp_path / "daemon.log"
        args = ["run", "--root", root, "--state-dir", str(tmp_path / "state"), "--config", str(config)]
        args += ["--interval", "60"]
        if fake:
            command = [sys.executable, "-c", FAKE_UEVENTS, str(tmp_path / "uevents.sock"), *args]
        else:
            command = [sys.executable, "-m", "irqagent", *args]
        log = open(log_path, "w")
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        started.append((process, notes, log))
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

        def send(data=EVENT):
            sender.sendto(data, str(tmp_path / "uevents.sock"))

        notes.wait_for("READY=1")
        return process, notes, send, lambda: log_path.read_text()

    yield run
    for process, notes, log in started:
        if process.poll() is None:
            process.kill()
            process.wait()
        notes.close()
        log.close()


def test_the_first_event_after_quiet_starts_a_pass_at_once(tree, start):
    """With a 5 s debounce, only a leading-edge pass fixes the IRQ within a second."""
    root = tree("cloud-hypervisor-320")
    process, notes, send, log = start(root, "[daemon]\ndebounce = 5\nmax_delay = 10\n")
    write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
    sent = time.monotonic()
    send()
    deadline = sent + 5
    while read(root, "proc/irq/4/smp_affinity_list") != "0-255" and time.monotonic() < deadline:
        time.sleep(0.005)
    fixed = time.monotonic() - sent
    while not notes.passes(since=sent) and time.monotonic() < deadline:
        time.sleep(0.005)
    first = notes.passes(since=sent)[0]
    elapsed = float(log().split("(uevent, ")[1].split("s)")[0])  # the pass's own duration
    assert fixed < 1.0, fixed
    assert first - elapsed - sent < 0.25  # the pass started right away (< 50 ms on an idle machine)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_a_continuous_storm_still_gets_a_pass_every_max_delay(tree, start):
    root = tree("live-kvm-2cpu")
    process, notes, send, log = start(root, "[daemon]\ndebounce = 0.5\nmax_delay = 1\n")
    began = time.monotonic()
    while time.monotonic() - began < 4.5:  # ~430 relevant events per second, as in the report
        send()
        send(IRRELEVANT)
        time.sleep(1 / 430)
    ended = time.monotonic()
    during = notes.passes(since=began, until=ended)
    assert len(during) >= 4, during  # leading edge, then one at least every second
    assert all(b - a < 1.6 for a, b in zip([began] + during, during + [ended]))
    time.sleep(1.5)
    assert len(notes.passes(since=ended)) == 1  # the trailing pass after the storm, then quiet
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_lost_events_are_logged_once_per_storm_and_answered_with_a_pass(tree, start):
    root = tree("cloud-hypervisor-320")
    process, notes, send, log = start(root, "[daemon]\ndebounce = 0.3\nmax_delay = 1\n")
    write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
    sent = time.monotonic()
    for _ in range(50):
        send(b"LOST")  # only losses: no event says what changed
        send(IRRELEVANT)
    deadline = sent + 5
    while read(root, "proc/irq/4/smp_affinity_list") != "0-255":
        assert time.monotonic() < deadline and process.poll() is None, log()
        time.sleep(0.01)
    time.sleep(0.6)
    assert log().count("uevents were lost") == 1
    time.sleep(0.5)  # a quiet period, then a new storm: logged again
    send(b"LOST")
    time.sleep(0.5)
    assert log().count("uevents were lost") == 2 and process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


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
        with open(CPU_UEVENT, "w") as handle:
            handle.write("change")
        time.sleep(0.1)
        assert agent.drain_uevents() == (1, False)  # the socket goes on after the overflow
    finally:
        agent.uevents.close()


def test_a_sighup_storm_logs_each_outcome_once(tree, start, tmp_path):
    root = tree("live-kvm-2cpu")
    process, notes, send, log = start(root, "[daemon]\ndebounce = 0.5\n")
    for _ in range(300):
        process.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    (tmp_path / "irqagent.toml").write_text("[daemon\n")  # broken: refused, old config kept
    for _ in range(300):
        process.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    (tmp_path / "irqagent.toml").write_text("[daemon]\ndebounce = 0.2\n")  # a real change
    for _ in range(300):
        process.send_signal(signal.SIGHUP)
        time.sleep(0.002)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    text = log()
    assert text.count("configuration reloaded (unchanged)") == 1
    assert text.count("reload refused, keeping the running config") == 1
    assert text.count("configuration reloaded\n") == 1


@pytest.mark.live  # writes this machine's /sys/devices/system/cpu/cpuN/uevent
@pytest.mark.skipif(not IS_ROOT or CPU_UEVENT is None, reason="needs root and /sys/devices/system/cpu/cpuN/uevent")
def test_a_real_storm_of_10000_uevents(tree, start):
    """10,000 `change` writes in a tight loop: the kernel's queue overflows (ENOBUFS), the
    daemon keeps running, passes during the storm, and is correct afterwards."""
    root = tree("cloud-hypervisor-320")
    process, notes, send, log = start(root, fake=False)
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


class Busy(KernelTree):
    """IRQ 4 answers EBUSY once, then takes the write; IRQ 8 always answers EINVAL."""

    attempts = []
    busy_left = 1

    def write_affinity(self, irq, text, filename="smp_affinity_list"):
        Busy.attempts.append(irq)
        if irq == 4 and Busy.busy_left:
            Busy.busy_left -= 1
            raise OSError(16, "Device or resource busy")
        if irq == 8:
            raise OSError(22, "Invalid argument")
        super().write_affinity(irq, text, filename)


def test_ebusy_is_retried_and_counters_count_what_happened(tree, tmp_path, monkeypatch):
    root = tree("cloud-hypervisor-320")
    monkeypatch.setattr(daemon_mod, "KernelTree", Busy)
    Busy.attempts, Busy.busy_left = [], 1
    settings = daemon_mod.Settings(root, str(tmp_path / "state"), None, None, None, uevents=False)
    stream = io.StringIO()
    locked = StateLock(settings.state_dir).lock()
    agent = daemon_mod.Daemon(
        settings, Config(daemon=DaemonSettings()), daemon_mod.Log(stream, False), Notifier(None), {}, locked
    )

    first = {row.irq: row for row in agent.run_pass("test").rows}
    assert (first[4].status, first[4].errno) == ("failed", "EBUSY")
    assert "retrying on the next pass" in first[4].detail
    assert (first[8].status, first[8].errno) == ("failed", "EINVAL")
    assert agent.state.retry  # the next periodic check runs a pass even if no mask changed

    second = {row.irq: row for row in agent.run_pass("retry").rows}
    assert second[4].status == "changed" and second[8].status == "failed"
    assert Busy.attempts.count(4) == 2 and Busy.attempts.count(8) == 1  # EINVAL is not retried
    assert not agent.state.retry
    agent.run_pass("rescan")
    metrics = render_prometheus(agent.state.last_report, agent.state.counters)
    assert 'irqagent_write_failures_total{errno="EBUSY"} 1' in metrics
    assert 'irqagent_write_failures_total{errno="EINVAL"} 1' in metrics  # not once per pass
    assert stream.getvalue().count("IRQ 8") == 1
