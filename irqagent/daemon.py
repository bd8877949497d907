"""``irqagent run``: apply at start, then keep every IRQ compliant.

One thread, one ``select()``: kernel uevents (netlink, via pyroute2), a self-pipe
for signals, and timers (debounce deadline, periodic rescan, watchdog).

* The first relevant uevent (cpu, pci, net, msi, virtio...) after a quiet period
  starts a pass at once; the rest of a burst gets one more pass ``debounce`` seconds
  after its last event (default 0.5 s), and a storm that never ends gets a pass
  every ``max_delay`` seconds (default 2 s), no more often (``Bursts``).  Every wakeup
  reads everything the kernel queued; events lost to an overflow (ENOBUFS) are logged
  once per storm and answered with a pass (every pass re-reads everything).
* A full rescan runs every ``--interval`` seconds (default 60) to catch what sends
  no uevent (another tool writing a mask).
* SIGHUP reloads the config (an invalid one is logged and the old one kept; a storm
  of SIGHUPs logs each distinct outcome once);
  SIGUSR1 asks for a pass now; SIGTERM and SIGINT stop it (exit 0).
* A pass that fails is logged and the next one runs: only bad usage at start or a
  held lock ends the process with status 2.
* A write the kernel refused is not retried until the IRQ's mask, its target or
  the config changes, and is logged once, not every pass.  EBUSY (a vector move
  still in flight) is not a refusal: it is retried at the next periodic check.

What the loop touches outside its state directory (time and waiting, the kernel tree,
the journal, the uevent socket) is a parameter of ``Daemon``: ``tests/daemon_harness.py``
runs it in-process on a fake clock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import threading
import time
from dataclasses import dataclass, field

from irqagent import __version__, runner
from irqagent.config import Config, load_config
from irqagent.errors import ExitStatus, IrqagentError
from irqagent.journal import JournalStore, StateDir, StateLock
from irqagent.kernel import KernelTree
from irqagent.notify import Notifier, watchdog_interval
from irqagent.outcomes import outcome_named
from irqagent.output import write_atomic
from irqagent.records import replace
from irqagent.render_prometheus import Counters, render_prometheus
from irqagent.render_text import refused_section, summary_line
from irqagent.uevents import open_kernel_uevents

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from types import FrameType
    from typing import Callable, Dict, List, Mapping, Optional, Protocol, Set, TextIO, Tuple

    from irqagent.cli import Environment
    from irqagent.config import DaemonSettings
    from irqagent.facts import PlatformFiles
    from irqagent.plan import IrqRow
    from irqagent.refused import Refusal
    from irqagent.report import Report

    class UeventSource(Protocol):
        """What the loop reads kernel uevents from: a non-blocking datagram socket."""

        def fileno(self) -> int: ...

        def recv(self, size: int, /) -> bytes: ...

        def close(self) -> None: ...


RELEVANT_SUBSYSTEMS = frozenset({"cpu", "pci", "net", "queues", "msi", "virtio", "vmbus", "xen", "xen-backend", "nvme"})
RELEVANT_ACTIONS = frozenset({"add", "remove", "change", "online", "offline", "bind", "unbind", "move"})
UEVENT_BUFFER = 1 << 16  # a uevent datagram: its path and at most 2,048 bytes of environment
DRAIN_SLICE = 0.2  # seconds one wakeup may spend reading uevents before timers are checked

# syslog priorities (sd-daemon(3) prefixes)
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6
LEVEL_WORDS = {ERR: "error: ", WARNING: "warning: ", NOTICE: "", INFO: ""}


class Log:
    """One line per message on stderr: ``<N>`` priority prefixes under systemd."""

    def __init__(self, stream: TextIO, journald: bool):
        self.stream = stream
        self.journald = journald

    def __call__(self, priority: int, message: str) -> None:
        message = message.replace("\n", " ")
        if self.journald:
            line = f"<{priority}>{message}\n"
        else:
            line = f"irqagent: {LEVEL_WORDS[priority]}{message}\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):
            pass


@dataclass
class Settings:
    root: str
    state_dir: str
    config_path: Optional[str]
    interval_option: Optional[float]
    metrics_option: Optional[str]
    uevents: bool = True


if TYPE_CHECKING:
    LoggedRow = Tuple[str, Optional[str], str, Optional[str], bool]  # status, errno, affinity, target, compliant
    ReloadOutcome = Tuple[str, object]  # ("loaded", config) or ("refused", message)


@dataclass
class DaemonState:
    config: Config
    counters: Counters = field(default_factory=Counters)
    logged: Dict[int, LoggedRow] = field(default_factory=dict)  # irq -> last logged state
    refused: Dict[int, Tuple[str, str, IrqRow]] = field(default_factory=dict)  # irq -> (affinity, target, row)
    passes: int = 0
    last_counts: Dict[str, int] = field(default_factory=dict)
    baseline: Optional[Dict[str, str]] = None  # affinity texts after the last pass
    last_report: Optional[Report] = None
    platform_files: Optional[PlatformFiles] = None  # MADT, DMI...: re-read only after a CPU hot-plug
    logged_refusal: Optional[Refusal] = None
    retry: bool = False  # the last pass met EBUSY: the next periodic check runs a pass
    replayed: Set[int] = field(default_factory=set)  # IRQs whose earlier refusal this pass reports again
    last_reload: Optional[ReloadOutcome] = None  # the outcome last logged for SIGHUP


class Clock:
    """Monotonic time, and the wait for readable descriptors.  The daemon reads time and
    waits only through this, so tests drive its loop with a fake one (no sleeps)."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, fds: List[int], timeout: float) -> List[int]:
        """The descriptors of ``fds`` that are readable, waiting at most ``timeout`` seconds."""
        ready: List[int] = select.select(fds, [], [], timeout)[0]
        return ready


@dataclass
class Bursts:
    """When relevant uevents get a pass (the one place this is decided).

    * The first event after a quiet period (no event for ``debounce`` seconds) gets a pass
      at once: the leading edge.
    * Events after that (the rest of a burst) are pending: their pass comes ``debounce``
      seconds after the last of them (the trailing pass: nothing is lost), but no later than
      ``max_delay`` seconds after the first of them, so a storm that never ends gets a pass
      every ``max_delay`` seconds, and no more often (passes start at least ``max_delay``
      apart while it lasts, however long a pass takes).
    * Events the loop could not see arrive (queued while a pass ran) are dated from when it
      stopped looking: they continue the burst that started the pass, they do not start a
      new one (otherwise a storm on a guest whose pass outlasts ``debounce`` would get pass
      after pass, back to back)."""

    pending: Optional[float] = None  # when the first event not yet covered by a pass was read
    last_event: Optional[float] = None  # when the last relevant event was read

    def quiet(self, earliest: float, settings: DaemonSettings) -> bool:
        """Whether an event that came no earlier than ``earliest`` would start a burst."""
        return self.last_event is None or earliest - self.last_event >= settings.debounce

    def seen(self, now: float, earliest: float, settings: DaemonSettings) -> bool:
        """Relevant events were read at ``now``; they came no earlier than ``earliest``.
        True when they start a burst (a pass now)."""
        quiet = self.quiet(earliest, settings)
        self.last_event = now
        if not quiet and self.pending is None:
            self.pending = now
        return quiet

    def due(self, settings: DaemonSettings) -> Optional[float]:
        """When the pass for pending events runs (None: none pending)."""
        if self.pending is None or self.last_event is None:
            return None
        return min(self.last_event + settings.debounce, self.pending + settings.max_delay)

    def covered(self) -> None:
        """A pass starts: it re-reads everything, so it covers every event read so far."""
        self.pending = None


def parse_uevent(data: bytes) -> Dict[str, str]:
    """``ACTION@DEVPATH\\0KEY=VALUE\\0...`` (a kernel uevent datagram) -> its ACTION and SUBSYSTEM."""
    event: Dict[str, str] = {}
    for field_ in data.split(b"\0")[1:]:
        key, sep, value = field_.partition(b"=")
        if sep and key in (b"ACTION", b"SUBSYSTEM"):
            event[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return event


def _relevant(event: Mapping[str, str]) -> bool:
    return event.get("SUBSYSTEM") in RELEVANT_SUBSYSTEMS and event.get("ACTION") in RELEVANT_ACTIONS


class Daemon:
    """The loop and its passes.  Everything it touches outside its state directory is a
    parameter: ``clock`` (time and waiting), ``open_tree`` (the kernel files under a root),
    ``open_journal`` (the journal in the locked state directory) and ``open_uevents`` (the
    kernel's uevent socket); the defaults are the real ones, tests pass fakes."""

    def __init__(
        self,
        settings: Settings,
        config: Config,
        log: Log,
        notifier: Notifier,
        environ: Mapping[str, str],
        state_dir: StateDir,
        *,
        clock: Optional[Clock] = None,
        open_tree: Callable[[str], KernelTree] = KernelTree,
        open_journal: Callable[[StateDir], JournalStore] = JournalStore,
        open_uevents: Callable[[], UeventSource] = open_kernel_uevents,
    ):
        self.settings = settings
        self.state_dir = state_dir  # open and locked: every pass writes through it
        self.state = DaemonState(config)
        self.log = log
        self.notifier = notifier
        self.watchdog = watchdog_interval(environ)
        self.clock = clock or Clock()
        self.open_tree = open_tree
        self.open_journal = open_journal
        self._open_uevents = open_uevents
        self.signals: List[int] = []
        self.stop_requested = False
        self.uevents: Optional[UeventSource] = None
        self.lost_logged = False  # ENOBUFS logged for this storm
        self._wake_write: Optional[int] = None  # the self-pipe's write end, while run() runs
        self._wake_lock = threading.Lock()  # request_stop() never writes to a closed (or reused) descriptor

    # -- settings that the config can change -----------------------------------

    @property
    def interval(self) -> float:
        return self.settings.interval_option or self.state.config.daemon.interval

    @property
    def metrics_file(self) -> Optional[str]:
        return self.settings.metrics_option or self.state.config.daemon.metrics_file

    # -- one pass ----------------------------------------------------------------

    def run_pass(self, reason: str) -> Optional[Report]:
        """Apply once; never raises (a failed pass is logged and the next one runs)."""
        started = self.clock.now()
        self.state.replayed = set()
        try:
            tree = self.open_tree(self.settings.root)
            tree.platform_files = self.state.platform_files
            self.state_dir.ensure_current()  # removed or replaced under us: re-lock or skip the pass
            report = runner.apply(
                tree,
                self.state.config,
                self.open_journal(self.state_dir),
                refused=self._still_refused,
                warn=lambda message: self.log(WARNING, message),
            )
        except IrqagentError as exc:
            self.state.baseline = None
            self.log(ERR, f"pass ({reason}) failed: {exc}")
            self.notifier.send(f"STATUS=last pass failed: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - the daemon outlives any one bad pass
            self.state.baseline = None
            self.log(ERR, f"pass ({reason}) failed: internal error: {type(exc).__name__}: {exc}")
            self.notifier.send(f"STATUS=last pass failed: {type(exc).__name__}")
            return None
        self.state.passes += 1
        self.state.platform_files = tree.platform_files
        self._log_refusal(report.refusal)
        self._record_baseline()
        # Count writes and refusals that happened in this pass, not replays of earlier ones.
        replayed = self.state.replayed
        self.state.counters.add(replace(report, rows=tuple(r for r in report.rows if r.irq not in replayed)))
        self._remember_refusals(report)
        self._log_rows(report)
        status = summary_line(report)
        counts = report.by_status()
        if report.writes or counts != self.state.last_counts:
            # Quiet when nothing changes: an idle daemon does not fill the journal.
            elapsed = self.clock.now() - started
            self.log(
                NOTICE if report.writes else INFO, f"pass {self.state.passes} ({reason}, {elapsed:.2f}s): {status}"
            )
        self.state.last_counts = counts
        self.notifier.send(f"STATUS={status}")
        self.state.last_report = report
        self.write_metrics()
        return report

    def write_metrics(self, checked: Optional[float] = None) -> None:
        if not self.metrics_file or self.state.last_report is None:
            return
        try:
            write_atomic(self.metrics_file, render_prometheus(self.state.last_report, self.state.counters, checked))
        except IrqagentError as exc:
            self.log(WARNING, f"metrics: {exc}")

    def changed_since_last_pass(self) -> bool:
        """The periodic check: re-read only the affinity files and compare them with the
        state the last pass left.  CPU, device and driver changes come with uevents; what
        this catches is someone else writing a mask.  On a 32,768-CPU guest with 16,384
        IRQs it reads 16,385 small files instead of everything a pass reads.  Any failure
        means "changed": the pass that follows reports it."""
        if self.state.baseline is None:
            return True
        try:
            return self.open_tree(self.settings.root).affinity_texts() != self.state.baseline
        except Exception:  # noqa: BLE001 - the pass that follows reports what is wrong
            return True

    def _record_baseline(self) -> None:
        try:
            self.state.baseline = self.open_tree(self.settings.root).affinity_texts()
        except Exception:  # noqa: BLE001 - no baseline: the next periodic check runs a pass
            self.state.baseline = None

    def _still_refused(self, row: IrqRow) -> Optional[IrqRow]:
        """The remembered outcome when the kernel refused this exact write before."""
        known = self.state.refused.get(row.irq)
        if known and known[0] == row.affinity and known[1] == row.target:
            self.state.replayed.add(row.irq)
            return known[2]
        return None

    def _remember_refusals(self, report: Report) -> None:
        self.state.retry = False
        for row in report.rows:
            if row.errno and outcome_named(row.errno).retry:  # EBUSY, a move still in flight: try again
                self.state.retry = True
                self.state.refused.pop(row.irq, None)
            elif row.status in ("failed", "managed") and row.errno and row.target is not None:
                self.state.refused.setdefault(row.irq, (row.affinity, row.target, row))
            elif row.status in ("ok", "changed", "vanished"):
                self.state.refused.pop(row.irq, None)

    def _log_refusal(self, refusal: Refusal) -> None:
        """The refused vCPUs, once per distinct verdict (not every pass)."""
        if refusal == self.state.logged_refusal:
            return
        earlier, self.state.logged_refusal = self.state.logged_refusal, refusal
        if refusal.cpus:
            text = " ".join(line.strip() for line in refused_section(refusal)[1:])
            self.log(WARNING if refusal.refused or refusal.slots else INFO, text)
        elif earlier is not None and earlier.cpus:
            self.log(NOTICE, "no vCPU is refused any more")

    def _log_rows(self, report: Report) -> None:
        seen: Set[int] = set()
        for row in report.rows:
            seen.add(row.irq)
            key: LoggedRow = (row.status, row.errno, row.affinity, row.target, row.compliant)
            if row.status == "changed":
                self.log(NOTICE, f"IRQ {row.irq} ({row.name or row.chip}): {row.affinity} -> {row.target} changed")
            elif row.status not in ("ok", "fixed-by-kernel", "ignored") and self.state.logged.get(row.irq) != key:
                priority = WARNING if not row.compliant or row.status == "failed" else INFO
                code = f" {row.errno}" if row.errno else ""
                reason = row.detail.split("; ")[0] if row.detail else ""
                self.log(priority, f"IRQ {row.irq} ({row.name or row.chip}): {row.status}{code}: {reason}")
            self.state.logged[row.irq] = key
        for irq in set(self.state.logged) - seen:
            del self.state.logged[irq]

    # -- signals and config --------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config; True when it changed.  Each distinct outcome is logged once,
        so a storm of SIGHUPs does not flood the journal."""
        try:
            config = load_config(self.settings.config_path, explicit=self.settings.config_path is not None)
        except IrqagentError as exc:
            self._log_reload(("refused", str(exc)), ERR, f"reload refused, keeping the running config: {exc}")
            return False
        changed = config != self.state.config
        if changed:
            self.state.config = config
            self.state.refused.clear()
        self._log_reload(("loaded", config), NOTICE, "configuration reloaded" + ("" if changed else " (unchanged)"))
        return changed

    def _log_reload(self, outcome: ReloadOutcome, priority: int, message: str) -> None:
        if outcome != self.state.last_reload:
            self.state.last_reload = outcome
            self.log(priority, message)

    def _on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        if signum not in self.signals:  # a storm of one signal is one request
            self.signals.append(signum)

    def request_stop(self) -> None:
        """Stop the loop as SIGTERM does (callable from another thread): the pass under
        way, if any, finishes first, so the journal is consistent."""
        self.stop_requested = True
        with self._wake_lock:
            if self._wake_write is not None:
                try:
                    os.write(self._wake_write, b"\0")
                except BlockingIOError:
                    pass  # the pipe is full: the loop wakes anyway

    # -- the loop ----------------------------------------------------------------

    def open_uevents(self) -> Optional[UeventSource]:
        """The uevent socket, or None (``--no-uevents``, or netlink unavailable: logged)."""
        if not self.settings.uevents:
            return None
        try:
            return self._open_uevents()
        except Exception as exc:  # noqa: BLE001 - netlink may be unavailable (container, not Linux)
            self.log(
                WARNING,
                f"cannot listen to kernel uevents ({type(exc).__name__}: {exc}); rescanning every "
                f"{self.interval:g}s only",
            )
            return None

    def drain_uevents(self, first_relevant: bool = False) -> Tuple[int, bool]:
        """Read everything queued (for at most DRAIN_SLICE seconds; with ``first_relevant``,
        up to the first relevant event only): (relevant events, whether events were lost to
        an overflow).  Nothing is kept: memory stays flat whatever the storm.  A socket that
        fails otherwise is closed (logged) and counts as one event."""
        relevant = 0
        lost = False
        deadline = self.clock.now() + DRAIN_SLICE
        count = 0
        while self.uevents is not None:
            try:
                data = self.uevents.recv(UEVENT_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel's queue overflowed: events were lost
                    lost = True
                    continue
                self.log(ERR, f"reading uevents failed ({exc}): rescanning every {self.interval:g}s only")
                self.uevents.close()
                self.uevents = None
                self.state.platform_files = None
                return max(relevant, 1), lost  # events may have been missed: a full pass
            event = parse_uevent(data)
            if _relevant(event):
                relevant += 1
                if event.get("SUBSYSTEM") == "cpu":
                    self.state.platform_files = None  # CPUs came or went: read the MADT again
                if first_relevant:
                    break
            count += 1
            if count % 256 == 0 and self.clock.now() > deadline:
                break
        if lost:
            self.state.platform_files = None  # a CPU hot-plug may have been among the lost events
        return relevant, lost

    def run(self) -> int:
        """The loop, until SIGTERM, SIGINT or ``request_stop()``: 0.  Runs in the main
        thread (it installs signal handlers)."""
        wake_read, wake_write = os.pipe()
        for fd in (wake_read, wake_write):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        with self._wake_lock:
            self._wake_write = wake_write
            if self.stop_requested:  # asked before there was a pipe to wake the loop with
                os.write(wake_write, b"\0")
        self.uevents = self.open_uevents()
        try:
            return self._loop(wake_read)
        finally:
            self.notifier.send("STOPPING=1")
            with self._wake_lock:
                self._wake_write = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)
            if self.uevents is not None:
                self.uevents.close()
                self.uevents = None
            self.notifier.close()

    def _loop(self, wake_read: int) -> int:
        clock = self.clock
        self.log(
            NOTICE,
            f"irqagent {__version__} started on {self.settings.root}: rescan every {self.interval:g}s, "
            f"{'uevents' if self.uevents is not None else 'no uevents'}",
        )
        unseen_since: Optional[float] = clock.now()  # uevents may queue unseen from then (the first pass)
        self.run_pass("start")
        self.notifier.send("READY=1")
        now = clock.now()
        next_rescan = now + self.interval
        next_watchdog = now
        bursts = Bursts()
        while True:
            now = clock.now()
            if self.watchdog and now >= next_watchdog:
                self.notifier.send("WATCHDOG=1")
                next_watchdog = now + self.watchdog
            deadlines = [next_rescan]
            due = bursts.due(self.state.config.daemon)
            if due is not None:
                deadlines.append(due)
            if self.watchdog:
                deadlines.append(next_watchdog)
            uevents_fd = self.uevents.fileno() if self.uevents is not None else None
            fds = [wake_read] + ([uevents_fd] if uevents_fd is not None else [])
            # After a pass, what queued while the loop was busy: events with no exact time.
            ready = clock.wait(fds, 0.0) if unseen_since is not None else []
            if uevents_fd not in ready:
                unseen_since = None  # nothing queued unseen: what the wait below finds, came then
            if not ready:
                ready = clock.wait(fds, max(0.0, min(deadlines) - now))
            if wake_read in ready:
                try:
                    while os.read(wake_read, 512):
                        pass
                except BlockingIOError:
                    pass
            reason = None
            signals, self.signals = self.signals, []
            if self.stop_requested:
                self.log(NOTICE, "stopping on request")
                return int(ExitStatus.OK)
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signum in signals:
                    self.log(NOTICE, f"stopping on {signal.Signals(signum).name}")
                    return int(ExitStatus.OK)
            if signal.SIGHUP in signals and self.reload():
                reason = "reload"
            if signal.SIGUSR1 in signals:
                reason = "SIGUSR1"
            if uevents_fd is not None and uevents_fd in ready and self._read_uevents(bursts, unseen_since):
                reason = reason or "uevent"  # leading edge: the first event of a burst
            unseen_since = None  # the socket was just read
            now = clock.now()
            due = bursts.due(self.state.config.daemon)
            if reason is None and due is not None and now >= due:
                reason = "uevent"
            if reason is None and now >= next_rescan:
                unseen_since = now
                if self.state.retry:
                    reason = "retry"
                elif self.changed_since_last_pass():
                    reason = "rescan"
                else:
                    self.write_metrics(checked=time.time())
                next_rescan = clock.now() + self.interval
            if reason is not None:
                bursts.covered()
                if unseen_since is None:
                    unseen_since = clock.now()
                self.run_pass(reason)
                next_rescan = clock.now() + self.interval

    def _read_uevents(self, bursts: Bursts, unseen_since: Optional[float]) -> bool:
        """Read the socket and note its relevant events in ``bursts``; True when they start
        a burst (a pass now).  ``unseen_since``: the loop was busy from then, so the events
        came no earlier than that (None: they came now)."""
        settings = self.state.config.daemon
        earliest = self.clock.now() if unseen_since is None else unseen_since
        # The first relevant event of a burst starts its pass at once: the rest of what is
        # queued is read after that pass (and gets the burst's trailing pass).
        relevant, lost = self.drain_uevents(first_relevant=bursts.quiet(earliest, settings))
        if not relevant and not lost:
            return False
        now = self.clock.now()
        starts = bursts.seen(now, now if unseen_since is None else unseen_since, settings)
        if starts:
            self.lost_logged = False  # a new storm
        if lost and not self.lost_logged:
            self.lost_logged = True
            self.log(WARNING, "uevents were lost (ENOBUFS: the kernel's queue overflowed): full pass")
        return starts


def run_daemon(args: Namespace, env: Environment) -> int:
    """Entry point of ``irqagent run`` (the CLI has checked the root)."""
    settings = Settings(
        root=args.root,
        state_dir=args.state_dir,
        config_path=args.config,
        interval_option=args.interval,
        metrics_option=args.metrics_file,
        uevents=not args.no_uevents,
    )
    if settings.interval_option is not None and not 0.1 <= settings.interval_option <= 86400:
        raise IrqagentError(f"--interval {settings.interval_option:g}: must be between 0.1 and 86400 seconds")
    config = load_config(args.config, explicit=args.config is not None)
    journald = bool(env.environ.get("JOURNAL_STREAM") or env.environ.get("NOTIFY_SOCKET"))
    log = Log(env.stderr, journald)
    with StateLock(args.state_dir) as state_dir:
        daemon = Daemon(settings, config, log, Notifier.from_environ(env.environ), env.environ, state_dir)
        return daemon.run()
