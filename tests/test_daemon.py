"""``irqagent run`` end to end: a real process, a fake notify socket, a --root tree."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from irqagent.daemon import Log, _relevant
from irqagent.notify import Notifier, watchdog_interval

from conftest import REPO, read, write

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


@pytest.mark.root  # writes "change" to this machine's /sys/devices/system/cpu/cpu0/uevent
@pytest.mark.skipif(not os.path.exists("/sys/devices/system/cpu/cpu0/uevent"), reason="no cpu0 uevent file")
def test_a_burst_of_uevents_gives_at_most_two_passes(tree, agent):
    """The first event starts a pass at once (leading edge); the rest of the burst, one more."""
    root = tree(GUEST)
    a = agent(root, uevents=True)
    a.notify.wait_for("READY=1")
    before = len([m for m in a.notify.messages if m.startswith("STATUS=")])
    for _ in range(30):
        with open("/sys/devices/system/cpu/cpu0/uevent", "w") as handle:
            handle.write("change")
    time.sleep(1.5)
    a.notify.drain(0.5)
    after = len([m for m in a.notify.messages if m.startswith("STATUS=")])
    assert 1 <= after - before <= 2
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


def test_a_permanent_problem_is_logged_once_not_every_pass(tree, agent, tmp_path):
    root = tree("managed")
    config = tmp_path / "irqagent.toml"
    config.write_text(ONLY_0_7)
    a = agent(root, "--config", str(config))
    a.notify.wait_for("READY=1")
    for _ in range(3):
        a.signal(signal.SIGUSR1)
        time.sleep(0.3)
    assert a.stop() == 0
    log = a.log()
    assert log.count("IRQ 42 (virtio2-req.2): managed") == 1
    assert log.count("pass ") == 2  # the first (writes) and the second (counts changed); then quiet


def refused_lines(tree, agent):
    """The daemon's log lines about refused vCPUs over three passes of qemu-kvm-288-8bit (QEMU/KVM, 288 vCPUs,
    no extended destination ID: the kernel refused CPUs 256-287, APIC IDs 0x100-0x11f)."""
    a = agent(tree("qemu-kvm-288-8bit"))
    a.notify.wait_for("READY=1")
    for _ in range(3):
        a.signal(signal.SIGUSR1)
        time.sleep(0.3)
    assert a.stop() == 0
    return [line for line in a.log().splitlines() if "256-287" in line]


def test_refused_vcpus_are_logged_once_not_every_pass(tree, agent):
    lines = refused_lines(tree, agent)
    assert len(lines) == 1
    assert lines[0].startswith("<4>") and "0x100-0x11f" in lines[0]


def test_the_logged_fix_names_the_qemu_option_intact(tree, agent):
    assert "-machine kernel-irqchip=split" in refused_lines(tree, agent)[0]


def test_a_failing_pass_does_not_kill_the_daemon(tree, agent):
    root = tree(GUEST)
    a = agent(root)
    a.notify.wait_for("READY=1")
    cpuinfo = read(root, "proc/cpuinfo")
    os.remove(os.path.join(root, "proc/cpuinfo"))
    a.signal(signal.SIGUSR1)
    wait_until(lambda: "failed: cannot read" in a.log(), 5)
    write(root, "proc/cpuinfo", cpuinfo)
    write(root, "proc/irq/4/smp_affinity_list", "0-319\n")
    a.signal(signal.SIGUSR1)
    wait_until(lambda: read(root, "proc/irq/4/smp_affinity_list") == "0-255", 5)
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


def test_periodic_check_catches_a_foreign_write_and_is_quiet_otherwise(tree, agent, tmp_path):
    root = tree(GUEST)
    metrics = tmp_path / "m.prom"
    a = agent(root, "--interval", "0.3", "--metrics-file", str(metrics))
    a.notify.wait_for("READY=1")
    time.sleep(1.0)  # a few periodic checks with nothing to do
    assert a.log().count("pass ") == 1
    checked = [line for line in metrics.read_text().splitlines() if line.startswith("irqagent_last_check")]
    assert checked and float(checked[0].split()[1]) > time.time() - 5
    write(root, "proc/irq/9/smp_affinity_list", "0-319\n")  # someone else; no uevent
    wait_until(lambda: read(root, "proc/irq/9/smp_affinity_list") == "0-255", 3)
    wait_until(lambda: "(rescan," in a.log(), 3)  # the pass logs once its writes are done
    assert a.stop() == 0


def test_cpu_hotplug_gives_irqs_their_original_cpus_back(tmp_path, agent):
    """CPUs 250-254 are offline when the agent restricts an IO-APIC IRQ on 0-319 (Cloud Hypervisor: APIC IDs
    0-255); when they come back online, the IRQs get original ∩ reachable ∩ online again: masks are not
    shrunk forever."""
    from irqagent import cpumask
    from dataclasses import replace

    from irqagent.devtools.gentree import guest_irqs, write_tree
    from irqagent.devtools.profiles import cloud_hypervisor_320

    def spec(offline):
        return replace(cloud_hypervisor_320(), offline=offline, irqs=guest_irqs(320, 8, KERNEL, "kvm"))

    root, later = str(tmp_path / "tree"), str(tmp_path / "later")
    write_tree(spec(cpumask.parse_cpulist("250-254")), root)
    write_tree(spec(0), later)
    a = agent(root)
    a.notify.wait_for("READY=1")
    assert read(root, "proc/irq/4/smp_affinity_list") == "0-249,255"
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-319"  # a 15-bit MSI: left alone
    for rel in ("proc/cpuinfo", "sys/devices/system/cpu/online"):  # the CPUs come online
        write(root, rel, read(later, rel) + "\n")
    a.signal(signal.SIGUSR1)  # the "online" uevents, in short
    wait_until(lambda: read(root, "proc/irq/4/smp_affinity_list") == "0-255", 5)
    assert a.stop() == 0
