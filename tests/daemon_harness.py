"""``irqagent run``'s loop in-process, on a fake clock: no sleeps, no timing luck.

The daemon reads time and waits only through its ``Clock``.  ``FakeClock`` keeps a timeline
of actions (a uevent sent, a signal raised, a file changed under the root); when the daemon
waits, the clock jumps to the next action, runs it, and returns what is readable then, or
jumps to the end of the wait.  A pass takes no time unless ``pass_cost`` says so, reading a
uevent none unless ``read_cost`` does.  Uevents
come through one end of a datagram socket pair, in the kernel's format; the datagram
``LOST`` reads as ENOBUFS (the kernel's queue overflowed).  Signals are real ones, sent to
this process while the daemon's handlers are installed.
"""

from __future__ import annotations

import collections
import errno
import heapq
import io
import itertools
import os
import select
import socket
import threading
from typing import Callable, Deque, List, Optional, Tuple

from irqagent import daemon as daemon_mod
from irqagent.config import Config
from irqagent.journal import JournalStore, StateLock
from irqagent.kernel import KernelTree
from irqagent.notify import Notifier

# Kernel uevent datagrams as the kernel sends them (lib/kobject_uevent.c: "ACTION@DEVPATH\0KEY=VALUE\0...").
CPU_EVENT = (
    b"change@/devices/system/cpu/cpu1\0ACTION=change\0DEVPATH=/devices/system/cpu/cpu1\0SUBSYSTEM=cpu\0SEQNUM=1\0"
)
NET_EVENT = b"add@/devices/virtual/net/veth0\0ACTION=add\0DEVPATH=/devices/virtual/net/veth0\0SUBSYSTEM=net\0SEQNUM=2\0"
IRRELEVANT = (
    b"change@/devices/virtual/block/loop0\0ACTION=change\0DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0"
)
LOST = b"LOST"
MADT = "sys/firmware/acpi/tables/APIC"


def ebusy_once_tree(attempts: List[int]) -> type:
    """A KernelTree whose IRQ 4 answers EBUSY once, then takes the write, and whose IRQ 8 always
    answers EINVAL; every IRQ written to is appended to ``attempts``."""

    class Busy(KernelTree):
        def write_affinity(self, irq: int, text: str, filename: str = "smp_affinity_list") -> None:
            attempts.append(irq)
            if irq == 4 and attempts.count(4) == 1:
                raise OSError(errno.EBUSY, "Device or resource busy")
            if irq == 8:
                raise OSError(errno.EINVAL, "Invalid argument")
            super().write_affinity(irq, text, filename)

    return Busy


class FakeClock:
    """Monotonic time that moves only when the daemon waits (or a pass is given a cost)."""

    def __init__(self, limit: float = 100_000.0):
        self.t = 0.0
        self.limit = limit  # a daemon that never stops fails the test instead of looping forever
        self.timeline: List[Tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()  # actions at the same time run in the order they were given

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timeline, (when, next(self.order), action))

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def wait(self, fds: List[int], timeout: float) -> List[int]:
        # What happened while the daemon was busy (a pass with a cost) happened before this wait.
        while self.timeline and self.timeline[0][0] <= self.t:
            heapq.heappop(self.timeline)[2]()
        ready = self._readable(fds)
        if ready:
            return ready
        deadline = self.t + timeout
        while self.timeline and self.timeline[0][0] <= deadline:
            when, _, action = heapq.heappop(self.timeline)
            self.t = max(self.t, when)
            action()
            ready = self._readable(fds)
            if ready:
                return ready
        if deadline > self.limit:
            raise AssertionError(f"the daemon still runs at t={self.t:g}: nothing stopped it")
        self.t = deadline
        return []

    @staticmethod
    def _readable(fds: List[int]) -> List[int]:
        return select.select(fds, [], [], 0)[0]


class FakeUevents:
    """The kernel's uevent socket: datagrams wait in a queue (unbounded: losses are explicit, the datagram
    ``LOST``), and one end of a socket pair is readable while the queue is not empty, so that the daemon's
    wait sees them.  ``send`` may be called from another thread."""

    def __init__(self, clock: Optional[FakeClock] = None, read_cost: float = 0.0) -> None:
        self.clock, self.read_cost = clock, read_cost  # each datagram read takes read_cost seconds
        self.reader, self.writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.reader.setblocking(False)
        self.queue: Deque[bytes] = collections.deque()
        self.lock = threading.Lock()
        self.fail_with: Optional[int] = None  # an errno every read raises (a broken socket)

    def fileno(self) -> int:
        return self.reader.fileno()

    def recv(self, size: int) -> bytes:
        if self.fail_with is not None:
            raise OSError(self.fail_with, os.strerror(self.fail_with))
        with self.lock:
            if not self.queue:
                try:
                    while self.reader.recv(16):
                        pass  # the readiness tokens: nothing is queued any more
                except BlockingIOError:
                    pass
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            data = self.queue.popleft()
        if self.clock is not None:
            self.clock.advance(self.read_cost)
        if data == LOST:
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return data

    def close(self) -> None:
        self.reader.close()

    def send(self, data: bytes = CPU_EVENT) -> None:
        with self.lock:
            if not self.queue:
                self.writer.send(b"!")
            self.queue.append(data)


class Notes(Notifier):
    """A NOTIFY_SOCKET that keeps every message with the (fake) time it was sent."""

    def __init__(self, clock: FakeClock):
        super().__init__(None)
        self.clock = clock
        self.messages: List[Tuple[float, str]] = []

    def send(self, *assignments: str) -> bool:
        self.messages.append((self.clock.now(), "\n".join(assignments)))
        return True

    def texts(self) -> List[str]:
        return [text for _, text in self.messages]


class Recording(daemon_mod.Daemon):
    """The daemon, with the start time and reason of each pass noted (and ``pass_cost`` seconds per pass)."""

    def __init__(self, *args, pass_cost: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pass_cost = pass_cost
        self.passes: List[Tuple[float, str]] = []
        self.pass_trees: List[KernelTree] = []  # the tree each pass read
        self.in_pass = False

    def run_pass(self, reason: str):
        self.passes.append((self.clock.now(), reason))
        self.in_pass = True
        try:
            return super().run_pass(reason)
        finally:
            self.in_pass = False
            self.clock.advance(self.pass_cost)


class Harness:
    """One daemon on ``root`` with a fake clock, fake uevents and a recording notifier."""

    def __init__(
        self,
        root: str,
        state_dir: str,
        config: Optional[Config] = None,
        *,
        config_path: Optional[str] = None,
        interval: Optional[float] = None,
        metrics: Optional[str] = None,
        uevents: bool = True,
        tree_class: Callable[[str], KernelTree] = KernelTree,
        open_uevents: Optional[Callable[[], object]] = None,
        environ: Optional[dict] = None,
        pass_cost: float = 0.0,
        read_cost: float = 0.0,
        journald: bool = False,
    ):
        self.root = root
        self.state_path = state_dir
        self.clock = FakeClock()
        self.source = FakeUevents(self.clock, read_cost)
        self.stream = io.StringIO()
        self.notes = Notes(self.clock)
        self.tree_class = tree_class
        settings = daemon_mod.Settings(root, state_dir, config_path, interval, metrics, uevents)
        self.state_dir = StateLock(state_dir).lock()
        self.daemon = Recording(
            settings,
            config if config is not None else Config(),
            daemon_mod.Log(self.stream, journald=journald),
            self.notes,
            environ or {},
            self.state_dir,
            clock=self.clock,
            open_tree=self._open_tree,
            open_journal=JournalStore,
            open_uevents=open_uevents or (lambda: self.source),
            pass_cost=pass_cost,
        )

    def _open_tree(self, root: str) -> KernelTree:
        tree = self.tree_class(root)
        if self.daemon.in_pass and len(self.daemon.pass_trees) < len(self.daemon.passes):
            self.daemon.pass_trees.append(tree)  # the first tree of a pass is the one it reads
        return tree

    # -- the timeline ------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.clock.at(when, action)

    def send_at(self, when: float, data: bytes = CPU_EVENT) -> None:
        self.at(when, lambda: self.source.send(data))

    def signal_at(self, when: float, signum: int) -> None:
        self.at(when, lambda: os.kill(os.getpid(), signum))

    def stop_at(self, when: float) -> None:
        self.at(when, self.daemon.request_stop)

    def run(self) -> int:
        """The loop until it stops; the state directory is unlocked afterwards."""
        try:
            return self.daemon.run()
        finally:
            self.state_dir.close()
            self.source.writer.close()

    # -- what happened -------------------------------------------------------------

    @property
    def passes(self) -> List[Tuple[float, str]]:
        return self.daemon.passes

    def pass_times(self, since: float = 0.0, until: float = float("inf")) -> List[float]:
        return [when for when, _ in self.passes if since <= when < until]

    def log(self) -> str:
        return self.stream.getvalue()
