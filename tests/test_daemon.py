"""``irqagent run``: in-process on a fake clock (``daemon_harness``), and end to end (a real
process, a fake notify socket, a --root tree)."""

import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, read, write
from daemon_harness import CPU_EVENT, IRRELEVANT, LOST, MADT, NET_EVENT, FakeUevents, ebusy_once_tree

from irqagent.config import Config, load_config
from irqagent.daemon import Daemon, Log, Settings, _relevant
from irqagent.journal import StateLock
from irqagent.kernel import KernelTree
from irqagent.notify import Notifier, watchdog_interval

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# cloud-hypervisor-320: 12 IRQs on 0-319; the IO-APIC ones (1, 4, 8, 9, 12) reach APIC IDs 0-255 only
# (Cloud Hypervisor's IO-APIC ignores the extended destination bits); its MSIs (24-30) are 15-bit.
GUEST = "cloud-hypervisor-320"
KERNEL = "6.12.118+deb13-amd64"
# The "managed" guest (16 vCPUs, 0444 virtio-blk vectors on CPUs 0, 4, 8, 12) under an operator's override that
# says every controller reaches APIC IDs 0-7: 6 IRQs and default_smp_affinity to write, IRQs 42 and 43 unfixable.
ONLY_0_7 = '[[controller]]\nchip = "*"\ndestination = "8bit"\nreachable_apic_ids = "0-7"\n'


class NotifySocket:
    """What systemd does: a datagram socket the service sends KEY=value messages to."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, wanted: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if wanted in message:
                    return message
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except socket.timeout:
                break
        raise AssertionError(f"no {wanted!r} in {self.messages}")

    def drain(self, timeout: float) -> None:
        """Collect whatever arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except socket.timeout:
                break

    def close(self):
        self.sock.close()


def run_args(root, state, *extra):
    return [sys.executable, "-m", "irqagent", "run", "--root", root, "--state-dir", str(state), *extra]


class Agent:
    def __init__(self, root, tmp_path, *extra, env=None, uevents=False):
        self.notify = NotifySocket(str(tmp_path / "notify.sock"))
        self.stderr = open(tmp_path / "agent.log", "w+")
        self.log_path = tmp_path / "agent.log"
        environ = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"), **(env or {}))
        args = run_args(root, tmp_path / "state", "--interval", "30", *extra)
        if not uevents:
            args.append("--no-uevents")
        self.proc = subprocess.Popen(args, cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=self.stderr)

    def log(self) -> str:
        with open(self.log_path) as handle:
            return handle.read()

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def close(self):
        self.notify.close()
        self.stderr.close()


@pytest.fixture
def agent(tmp_path):
    started = []

    def start(root, *extra, **kwargs):
        started.append(Agent(root, tmp_path, *extra, **kwargs))
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()
        process.close()


def wait_until(predicate, timeout: float) -> float:
    """Seconds it took for ``predicate`` to hold; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_ready_fix_on_event_reload_and_stop(tree, agent, tmp_path):
    root = tree(GUEST)
    config = tmp_path / "irqagent.toml"
    config.write_text("[daemon]\ndebounce = 0.2\n")
    a = agent(root, "--config", str(config))
    a.notify.wait_for("READY=1")
    assert "STATUS=apply: 12 IRQs, 12 compliant" in a.notify.wait_for("STATUS=")
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"

    write(root, "proc/irq/4/smp_affinity_list", "0-319\n")  # someone makes it non-compliant
    a.signal(signal.SIGUSR1)  # an event: a pass right away
    assert wait_until(lambda: read(root, "proc/irq/4/smp_affinity_list") == "0-255", 1.0) < 1.0

    config.write_text("[policy\n")  # broken config: logged, old one kept
    a.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused, keeping the running config" in a.log(), 5)
    assert a.proc.poll() is None
    assert a.stop() == 0
    a.notify.wait_for("STOPPING=1")
    assert "stopping on SIGTERM" in a.log()


@pytest.mark.root  # writes "change" to this machine's /sys/devices/system/cpu/cpu0/uevent
@pytest.mark.skipif(not os.path.exists("/sys/devices/system/cpu/cpu0/uevent"), reason="no cpu0 uevent file")
def test_a_real_kernel_uevent_triggers_a_pass_within_a_second(tree, agent):
    root = tree(GUEST)
    a = agent(root, uevents=True)
    a.notify.wait_for("READY=1")
    assert "uevents" in a.log() and "no uevents" not in a.log()
    write(root, "proc/irq/12/smp_affinity_list", "250-319\n")
    with open("/sys/devices/system/cpu/cpu0/uevent", "w") as handle:
        handle.write("change")  # the kernel emits a real "change@/devices/system/cpu/cpu0" uevent
    assert wait_until(lambda: read(root, "proc/irq/12/smp_affinity_list") == "250-255", 1.0) < 1.0
    assert a.stop() == 0


def test_second_instance_on_the_same_state_dir_refuses(tree, agent, tmp_path):
    root = tree("qemu-kvm-256")
    a = agent(root)
    a.notify.wait_for("READY=1")
    second = subprocess.run(
        run_args(root, tmp_path / "state", "--no-uevents"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert second.returncode == 2
    assert "another irqagent apply, restore or run is active" in second.stderr
    assert a.stop() == 0


def test_watchdog_metrics_and_journald_prefixes(tree, agent, tmp_path):
    root = tree("managed")
    metrics = tmp_path / "irqagent.prom"
    config = tmp_path / "irqagent.toml"
    config.write_text(ONLY_0_7)
    env = {"WATCHDOG_USEC": "200000", "JOURNAL_STREAM": "8:1"}
    a = agent(root, "--metrics-file", str(metrics), "--config", str(config), env=env)
    a.notify.wait_for("READY=1")
    a.notify.wait_for("WATCHDOG=1")
    wait_until(metrics.exists, 5)
    text = metrics.read_text()
    assert "irqagent_writes_total 7\n" in text and 'irqagent_irqs{status="managed"} 4\n' in text
    lines = a.log().splitlines()
    assert lines and all(line[:3] in ("<3>", "<4>", "<5>", "<6>") for line in lines)
    assert a.stop() == 0


def test_bad_config_at_start_is_exit_2(tree, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[daemon]\ninterval = -1\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "irqagent",
            "run",
            "--root",
            tree("qemu-kvm-256"),
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2 and "daemon.interval" in result.stderr


def test_notifier_abstract_socket_and_no_socket():
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"irqagent-test-{os.getpid()}"
    server.bind("\0" + name)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.send("READY=1", "STATUS=ok")
        assert server.recv(100) == b"READY=1\nSTATUS=ok"
    finally:
        server.close()
    assert not Notifier(None).send("READY=1")


def test_watchdog_interval_parsing():
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    assert watchdog_interval({}) is None


def test_relevant_uevents():
    assert _relevant({"SUBSYSTEM": "cpu", "ACTION": "online"})
    assert _relevant({"SUBSYSTEM": "pci", "ACTION": "bind"})
    assert not _relevant({"SUBSYSTEM": "block", "ACTION": "change"})
    assert not _relevant({"SUBSYSTEM": "cpu", "ACTION": "weird"})


def test_log_format(capsys):
    Log(sys.stderr, journald=True)(4, "two\nlines")
    Log(sys.stderr, journald=False)(3, "bad")
    assert capsys.readouterr().err == "<4>two lines\nirqagent: error: bad\n"
    closed = io.StringIO()
    closed.close()
    Log(closed, journald=False)(3, "nowhere to go")  # a closed stderr is not a reason to die


# -- in-process, on a fake clock (tests/daemon_harness.py) ------------------------------------------------------


def test_a_pass_at_start_then_ready_then_a_clean_stop(tree, harness):
    root = tree(GUEST)
    h = harness(root)
    h.stop_at(30)
    assert h.run() == 0
    assert h.passes == [(0.0, "start")]
    texts = h.notes.texts()
    assert "STATUS=apply: 12 IRQs, 12 compliant" in texts[0]
    assert texts[1:] == ["READY=1", "STOPPING=1"]
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"  # written by the start pass
    assert "started on" in h.log() and "stopping on request" in h.log()


def test_a_stop_requested_before_the_loop_runs_is_not_lost(tree, harness):
    """request_stop() before run() (a service manager that stops at once): the start pass, then
    the stop, without waiting for the next periodic check."""
    h = harness(tree(GUEST))
    h.daemon.request_stop()
    assert h.run() == 0
    assert h.passes == [(0.0, "start")]
    assert h.daemon.clock.now() == 0.0
    assert "stopping on request" in h.log()


def test_a_relevant_uevent_starts_a_pass_at_once_an_irrelevant_one_none(tree, harness):
    root = tree(GUEST)
    h = harness(root)
    h.at(5, lambda: write(root, "proc/irq/4/smp_affinity_list", "0-319\n"))  # someone makes it non-compliant
    h.send_at(5, IRRELEVANT)  # a loop device: not a reason for a pass
    h.send_at(12.5, NET_EVENT)
    h.stop_at(20)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (12.5, "uevent")]  # the pass starts when the event is read
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"


def test_the_madt_is_read_again_only_after_a_cpu_uevent_or_lost_events(tree, harness):
    h = harness(tree(GUEST))
    for when, event in ((10, NET_EVENT), (20, CPU_EVENT), (30, NET_EVENT), (40, LOST), (50, NET_EVENT)):
        h.send_at(when, event)
    h.signal_at(60, signal.SIGUSR1)
    h.stop_at(70)
    assert h.run() == 0
    assert [reason for _, reason in h.passes] == ["start"] + ["uevent"] * 5 + ["SIGUSR1"]
    assert [MADT in tree.accessed for tree in h.daemon.pass_trees] == [True, False, True, False, True, False, False]


def test_cpu_hotplug_gives_irqs_their_original_cpus_back(tmp_path, harness):
    """CPUs 250-254 are offline when the agent restricts an IO-APIC IRQ on 0-319 (Cloud Hypervisor: APIC IDs
    0-255); when they come back online (a cpu uevent), the IRQs get original ∩ reachable ∩ online again: masks
    are not shrunk forever."""
    from dataclasses import replace

    from irqagent import cpumask
    from irqagent.devtools.gentree import guest_irqs, write_tree
    from irqagent.devtools.profiles import cloud_hypervisor_320

    def spec(offline):
        return replace(cloud_hypervisor_320(), offline=offline, irqs=guest_irqs(320, 8, KERNEL, "kvm"))

    root, later = str(tmp_path / "tree"), str(tmp_path / "later")
    write_tree(spec(cpumask.parse_cpulist("250-254")), root)
    write_tree(spec(0), later)
    h = harness(root)

    def online():
        for rel in ("proc/cpuinfo", "sys/devices/system/cpu/online"):
            write(root, rel, read(later, rel) + "\n")

    h.at(10, online)
    h.send_at(10, CPU_EVENT)
    h.at(15, lambda: h.passes.append((15.0, "mask of IRQ 4: " + read(root, "proc/irq/4/smp_affinity_list"))))
    h.stop_at(20)
    masks_at_start = []
    h.at(1, lambda: masks_at_start.extend(read(root, f"proc/irq/{n}/smp_affinity_list") for n in (4, 24)))
    assert h.run() == 0
    assert masks_at_start == ["0-249,255", "0-319"]  # restricted; a 15-bit MSI left alone
    assert h.passes == [(0.0, "start"), (10.0, "uevent"), (15.0, "mask of IRQ 4: 0-255")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_a_pass_lets_it_finish_and_restore_undoes_it(tree, harness, cli, tmp_path, signum):
    """The signal comes while the start pass writes its first IRQ: the pass writes the others and saves the
    journal, then the daemon exits 0; ``restore`` finds every original (0-319) in the journal."""
    root = tree(GUEST)
    written = []

    class Interrupted(KernelTree):
        def write_affinity(self, irq, text, filename="smp_affinity_list"):
            if not written:
                os.kill(os.getpid(), signum)
            written.append(irq)
            super().write_affinity(irq, text, filename)

    h = harness(root, tree_class=Interrupted)
    h.stop_at(1000)  # not reached
    assert h.run() == 0
    assert h.passes == [(0.0, "start")]
    assert sorted(written) == [1, 4, 8, 9, 12]
    assert f"stopping on {signal.Signals(signum).name}" in h.log()
    assert h.notes.texts()[-1] == "STOPPING=1"
    assert [read(root, f"proc/irq/{n}/smp_affinity_list") for n in (1, 4, 8, 9, 12)] == ["0-255"] * 5
    result = cli("restore", "--root", root, "--state-dir", str(tmp_path / "state"))
    assert result.code == 0, result.err
    assert [read(root, f"proc/irq/{n}/smp_affinity_list") for n in (1, 4, 8, 9, 12)] == ["0-319"] * 5


def test_failed_passes_are_reported_and_the_next_one_runs(tree, harness):
    root = tree(GUEST)
    armed = []

    class Exploding(KernelTree):
        def collect(self, *args, **kwargs):
            if armed:
                raise RuntimeError("unexpected")
            return super().collect(*args, **kwargs)

    cpuinfo = read(root, "proc/cpuinfo")
    h = harness(root, tree_class=Exploding)
    h.at(10, lambda: armed.append(True))
    h.send_at(10, NET_EVENT)
    h.at(20, armed.clear)
    h.at(20, lambda: os.remove(os.path.join(root, "proc/cpuinfo")))
    h.send_at(20, NET_EVENT)
    h.at(30, lambda: write(root, "proc/cpuinfo", cpuinfo))
    h.at(30, lambda: write(root, "proc/irq/4/smp_affinity_list", "0-319\n"))
    h.send_at(30, NET_EVENT)
    h.stop_at(40)
    assert h.run() == 0
    assert [when for when, _ in h.passes] == [0.0, 10.0, 20.0, 30.0]
    log = h.log()
    assert "error: pass (uevent) failed: internal error: RuntimeError: unexpected" in log
    assert "error: pass (uevent) failed: cannot read " in log and "proc/cpuinfo" in log
    statuses = [text for text in h.notes.texts() if text.startswith("STATUS=")]
    assert statuses[1] == "STATUS=last pass failed: RuntimeError"
    assert statuses[2].startswith("STATUS=last pass failed: cannot read ")
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"  # the pass after them works


def test_a_broken_uevent_socket_is_logged_and_rescans_go_on(tree, harness):
    root = tree(GUEST)
    h = harness(root, interval=60)
    h.at(10, lambda: setattr(h.source, "fail_with", errno.EIO))
    h.send_at(10, NET_EVENT)
    h.at(20, lambda: write(root, "proc/irq/4/smp_affinity_list", "0-319\n"))
    h.stop_at(100)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (10.0, "uevent"), (70.0, "rescan")]  # no uevents after 10 s: rescans
    assert "error: reading uevents failed ([Errno 5] Input/output error): rescanning every 60s only" in h.log()
    assert "uevents were lost" not in h.log()
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"


def test_no_netlink_is_a_warning_and_the_daemon_rescans(tree, harness):
    def unavailable():
        raise PermissionError(errno.EACCES, "Permission denied")

    h = harness(tree(GUEST), open_uevents=unavailable, interval=30)
    h.stop_at(100)
    assert h.run() == 0
    log = h.log()
    assert "warning: cannot listen to kernel uevents (PermissionError: [Errno 13] Permission denied)" in log
    assert "rescan every 30s, no uevents" in log


def test_the_periodic_check_is_quiet_until_someone_else_writes_a_mask(tree, harness, tmp_path):
    root = tree(GUEST)
    metrics = tmp_path / "irqagent.prom"
    h = harness(root, interval=10, metrics=str(metrics))
    checked = []

    def last_check():
        lines = [line for line in metrics.read_text().splitlines() if line.startswith("irqagent_last_check")]
        checked.append(float(lines[0].split()[1]) if lines else None)

    h.at(15, last_check)
    h.at(25, lambda: write(root, "proc/irq/9/smp_affinity_list", "0-319\n"))  # no uevent says so
    h.stop_at(45)
    before = time.time()
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (30.0, "rescan")]  # the checks at 10, 20 and 40 find nothing to do
    assert checked[0] is not None and checked[0] >= before - 1  # the check at 10 s is in the metrics
    assert read(root, "proc/irq/9/smp_affinity_list") == "0-255"
    assert h.log().count("pass ") == 2  # the start and the rescan wrote; the checks say nothing


def test_ebusy_is_retried_at_the_next_periodic_check(tree, harness):
    root = tree(GUEST)
    attempts = []
    Busy = ebusy_once_tree(attempts)  # IRQ 4: EBUSY once, then the write; IRQ 8: always EINVAL

    h = harness(root, tree_class=Busy, interval=10)
    h.stop_at(25)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (10.0, "retry")]  # no mask changed: only EBUSY asks for the pass at 10
    assert attempts.count(4) == 2 and attempts.count(8) == 1  # EINVAL is not retried
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert h.log().count("IRQ 8") == 1


def test_watchdog_pings_every_half_watchdog_usec(tree, harness):
    h = harness(tree(GUEST), environ={"WATCHDOG_USEC": "2000000"})
    h.stop_at(10.5)
    assert h.run() == 0
    assert [when for when, text in h.notes.messages if text == "WATCHDOG=1"] == [float(n) for n in range(11)]


def test_reload_and_sigusr1(tree, harness, tmp_path):
    root = tree(GUEST)
    config = tmp_path / "irqagent.toml"
    config.write_text("[daemon]\ndebounce = 0.5\n")
    h = harness(root, load_config(str(config), explicit=True), config_path=str(config))
    h.signal_at(5, signal.SIGHUP)  # unchanged: no pass
    h.at(10, lambda: config.write_text("[policy\n"))
    h.signal_at(10, signal.SIGHUP)  # broken: logged, the old config kept
    h.at(15, lambda: config.write_text('[policy]\nexclude_cpus = "0"\n'))
    h.signal_at(15, signal.SIGHUP)  # changed: a pass
    h.signal_at(20, signal.SIGUSR1)
    h.stop_at(25)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (15.0, "reload"), (20.0, "SIGUSR1")]
    log = h.log()
    assert "configuration reloaded (unchanged)" in log and "reload refused, keeping the running config" in log
    assert read(root, "proc/irq/24/smp_affinity_list") == "1-319"  # the new policy applied


def test_a_permanent_problem_is_logged_once_not_every_pass(tree, harness):
    config = load_config_text(ONLY_0_7)
    h = harness(tree("managed"), config)
    for when in (5, 10, 15):
        h.signal_at(when, signal.SIGUSR1)
    h.stop_at(20)
    assert h.run() == 0
    assert len(h.passes) == 4
    log = h.log()
    assert log.count("IRQ 42 (virtio2-req.2): managed") == 1
    assert log.count("pass ") == 2  # the first (writes) and the second (counts changed); then quiet


def test_refused_vcpus_are_logged_once_with_the_qemu_fix_intact(tree, harness):
    """qemu-kvm-288-8bit (QEMU/KVM, 288 vCPUs, no extended destination ID): the kernel refused CPUs 256-287,
    APIC IDs 0x100-0x11f."""
    h = harness(tree("qemu-kvm-288-8bit"), journald=True)
    for when in (5, 10, 15):
        h.signal_at(when, signal.SIGUSR1)
    h.stop_at(20)
    assert h.run() == 0
    lines = [line for line in h.log().splitlines() if "256-287" in line]
    assert len(lines) == 1
    assert lines[0].startswith("<4>") and "0x100-0x11f" in lines[0]
    assert "-machine kernel-irqchip=split" in lines[0]


def load_config_text(text):
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "irqagent.toml")
        with open(path, "w") as handle:
            handle.write(text)
        return load_config(path, explicit=True)


# -- in-process, on the real clock: another thread feeds the loop ---------------------------------------------


def test_a_uevent_and_a_stop_request_from_another_thread(tree, tmp_path):
    root = tree(GUEST)
    source = FakeUevents()
    ready, fixed = threading.Event(), threading.Event()

    class Notes(Notifier):
        def send(self, *assignments):
            if "READY=1" in assignments:
                ready.set()
            elif any(text.startswith("STATUS=") for text in assignments) and ready.is_set():
                fixed.set()
            return True

    stream = io.StringIO()
    settings = Settings(root, str(tmp_path / "state"), None, None, None)
    with StateLock(settings.state_dir) as locked:
        agent = Daemon(settings, Config(), Log(stream, False), Notes(None), {}, locked, open_uevents=lambda: source)

        def feed():
            if ready.wait(60):
                write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
                source.send(NET_EVENT)
                fixed.wait(60)
            agent.request_stop()

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            assert agent.run() == 0
        finally:
            feeder.join()
    assert fixed.is_set() and read(root, "proc/irq/4/smp_affinity_list") == "0-255"
    assert "stopping on request" in stream.getvalue()


def test_irqagent_run_in_process_stops_on_sigterm(tree, cli, tmp_path):
    root = tree(GUEST)
    path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(path)
    notify.settimeout(60)
    running = threading.Event()
    running.set()

    def stop_when_ready():
        try:
            while b"READY=1" not in notify.recv(65536):
                pass
        except OSError:
            pass  # no READY=1 in 60 s: the assertions below fail, and the daemon is stopped all the same
        handler = signal.getsignal(signal.SIGTERM)
        if running.is_set() and isinstance(getattr(handler, "__self__", None), Daemon):
            os.kill(os.getpid(), signal.SIGTERM)  # the daemon's handler is installed: it stops, not pytest

    stopper = threading.Thread(target=stop_when_ready)
    stopper.start()
    try:
        result = cli(
            "run",
            "--root",
            root,
            "--state-dir",
            str(tmp_path / "state"),
            "--no-uevents",
            environ={"NOTIFY_SOCKET": path},
        )
    finally:
        running.clear()
        notify.close()
        stopper.join()
    assert result.code == 0, result.err
    assert "<5>stopping on SIGTERM" in result.err  # NOTIFY_SOCKET set: journald priorities
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"


def test_an_interval_out_of_range_is_exit_2(tree, cli, tmp_path):
    result = cli("run", "--root", tree(GUEST), "--state-dir", str(tmp_path / "state"), "--interval", "0.01")
    assert result.code == 2
    assert "--interval 0.01: must be between 0.1 and 86400 seconds" in result.err


def test_an_irq_that_vanishes_and_comes_back_is_logged_again(tree, harness):
    root = tree("managed")
    h = harness(root, load_config_text(ONLY_0_7))
    moved = []
    for rel in ("proc/irq/42", "sys/kernel/irq/42"):
        h.at(10, lambda rel=rel: moved.append(os.rename(os.path.join(root, rel), os.path.join(root, rel + ".gone"))))
        h.at(20, lambda rel=rel: os.rename(os.path.join(root, rel + ".gone"), os.path.join(root, rel)))
    h.send_at(10, NET_EVENT)
    h.send_at(20, NET_EVENT)
    h.send_at(30, NET_EVENT)
    h.stop_at(40)
    assert h.run() == 0
    assert [when for when, _ in h.passes] == [0.0, 10.0, 20.0, 30.0]
    assert h.log().count("IRQ 42 (virtio2-req.2): managed") == 2  # at start, and when it is back; not at 30


def test_a_verdict_that_changes_is_logged_when_it_changes(tree, harness, tmp_path):
    """qemu-kvm-288-8bit refuses CPUs 256-287; the same guest with the extended destination ID
    (qemu-kvm-288-extdest) refuses none."""
    from conftest import copy_fixture

    root = tree("qemu-kvm-288-8bit")
    other = copy_fixture("qemu-kvm-288-extdest", str(tmp_path / "extdest"))

    def reboot_with_extdest():
        shutil.rmtree(root)
        shutil.copytree(other, root, symlinks=True)

    h = harness(root)
    h.at(10, reboot_with_extdest)
    h.send_at(10, CPU_EVENT)
    h.stop_at(20)
    assert h.run() == 0
    log = h.log()
    assert log.count("256-287") == 1 and "no vCPU is refused any more" in log.split("256-287")[1]


def test_a_metrics_file_that_cannot_be_written_is_a_warning(tree, harness, tmp_path):
    h = harness(tree(GUEST), metrics=str(tmp_path / "no-such-dir" / "irqagent.prom"))
    h.signal_at(5, signal.SIGUSR1)
    h.stop_at(10)
    assert h.run() == 0
    assert h.log().count("warning: metrics: cannot write ") == 2  # each pass says so; the daemon goes on
    assert [when for when, _ in h.passes] == [0.0, 5.0]


def test_a_periodic_check_that_cannot_read_runs_a_pass(tree, harness):
    root = tree(GUEST)
    broken = []

    class Unreadable(KernelTree):
        def affinity_texts(self):
            if broken:
                raise RuntimeError("unexpected")
            return super().affinity_texts()

    h = harness(root, tree_class=Unreadable, interval=10)
    h.at(15, lambda: broken.append(True))
    h.stop_at(25)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (20.0, "rescan")]  # the check at 20 could not compare: a pass


def test_one_wakeup_reads_uevents_for_at_most_a_slice(tree, tmp_path):
    """A clock that moves 0.15 s at every reading: the drain stops after the 0.2 s slice (checked every
    256 datagrams), so timers are not starved; the rest is read at the next wakeup."""

    class Slow:
        t = 0.0

        def now(self):
            Slow.t += 0.15
            return Slow.t

    source = FakeUevents()
    for _ in range(600):
        source.send(NET_EVENT)
    settings = Settings(tree(GUEST), str(tmp_path / "state"), None, None, None)
    with StateLock(settings.state_dir) as locked:
        agent = Daemon(settings, Config(), Log(io.StringIO(), False), Notifier(None), {}, locked, clock=Slow())
        agent.uevents = source
        assert agent.drain_uevents() == (512, False)
        assert agent.drain_uevents() == (88, False)
    source.close()


def test_a_failed_pass_is_run_again_at_the_next_periodic_check(tree, harness):
    root = tree(GUEST)
    cpuinfo = read(root, "proc/cpuinfo")
    os.remove(os.path.join(root, "proc/cpuinfo"))
    h = harness(root, interval=10)
    h.at(5, lambda: write(root, "proc/cpuinfo", cpuinfo))  # no uevent, no mask changed since
    h.stop_at(15)
    assert h.run() == 0
    assert h.passes == [(0.0, "start"), (10.0, "rescan")]
    assert "error: pass (start) failed: cannot read " in h.log()
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-255"
