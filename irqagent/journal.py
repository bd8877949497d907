"""The journal of original masks under the state directory.

One JSON document, ``STATE_DIR/journal.json``, replaced atomically (temp file,
fsync, rename, fsync of the directory) so that a crash at any moment leaves
either the old or the new journal, never a torn one.  A SHA-256 over the
canonical entries detects a file damaged some other way; a damaged journal is
never used to write anything.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from irqagent import cpumask
from irqagent.errors import StateError
from irqagent.paths import DEFAULT_STATE_DIR  # noqa: F401 - the default lives in paths; kept importable here

SCHEMA = "irqagent.journal/1"
FILENAME = "journal.json"
LOCKNAME = "lock"
DEFAULT_AFFINITY_KEY = "default_smp_affinity"


@dataclass(frozen=True)
class JournalEntry:
    """What one IRQ held before the agent first wrote it, and what the agent wrote."""

    irq: int
    original: str  # the text the kernel reported (cpulist, or hex for smp_affinity)
    written: str  # what the agent wrote (and read back) last
    chip: str = ""
    name: str = ""
    file: str = "smp_affinity_list"
    time: float = 0.0

    def same_interrupt(self, chip: str, name: str) -> bool:
        """The IRQ number still belongs to the interrupt the entry describes."""
        return self.chip == chip and self.name == name


@dataclass(frozen=True)
class Journal:
    entries: Mapping[int, JournalEntry]
    default_affinity: Optional[JournalEntry] = None  # irq = -1

    @property
    def empty(self) -> bool:
        return not self.entries and self.default_affinity is None


EMPTY = Journal({})


def _checksum(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(journal: Journal) -> str:
    body = {
        "entries": {str(irq): _entry_dict(entry) for irq, entry in sorted(journal.entries.items())},
        DEFAULT_AFFINITY_KEY: _entry_dict(journal.default_affinity) if journal.default_affinity else None,
    }
    document = {"schema": SCHEMA, "sha256": _checksum(body), **body}
    return json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"


def _entry_dict(entry: JournalEntry) -> dict:
    return {
        "original": entry.original,
        "written": entry.written,
        "chip": entry.chip,
        "name": entry.name,
        "file": entry.file,
        "time": entry.time,
    }


def decode(text: str, where: str = FILENAME) -> Journal:
    """Parse and verify a journal; raise StateError when it is damaged in any way."""

    def damaged(reason: str) -> StateError:
        return StateError(f"journal {where} is damaged ({reason}); it is not used. Check it, then move it aside")

    try:
        document = json.loads(text)
    except ValueError as exc:
        raise damaged(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise damaged(f"schema is not {SCHEMA}")
    body = {key: document.get(key) for key in ("entries", DEFAULT_AFFINITY_KEY)}
    if document.get("sha256") != _checksum(body):
        raise damaged("checksum mismatch")
    if not isinstance(body["entries"], dict):
        raise damaged("entries is not an object")
    entries = {}
    for key, raw in body["entries"].items():
        if not cpumask.is_decimal(key):
            raise damaged(f"IRQ key {key!r} is not a number")
        entries[int(key)] = _entry(int(key), raw, damaged)
    default = body[DEFAULT_AFFINITY_KEY]
    return Journal(entries, _entry(-1, default, damaged) if default is not None else None)


def _entry(irq: int, raw, damaged) -> JournalEntry:
    fields = ("original", "written", "chip", "name", "file")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(f), str) for f in fields):
        raise damaged(f"entry for IRQ {irq} is malformed")
    entry = JournalEntry(irq=irq, time=float(raw.get("time") or 0), **{f: raw[f] for f in fields})
    try:
        cpumask.parse_for_file(entry.original, entry.file)
        cpumask.parse_for_file(entry.written, entry.file)
    except cpumask.CpumaskError as exc:
        raise damaged(f"entry for IRQ {irq}: {exc}") from None
    return entry


class JournalStore:
    """Load and save the journal in a state directory."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, FILENAME)

    def load(self) -> Journal:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            return EMPTY
        except OSError as exc:
            raise StateError(f"cannot read journal {self.path}: {exc.strerror}") from None
        return decode(text, self.path)

    def save(self, journal: Journal) -> None:
        """Replace the journal atomically and durably (or remove it when empty)."""
        try:
            if journal.empty:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    return
            else:
                self._ensure_dir()
                fd, temp = tempfile.mkstemp(prefix=".journal.", dir=self.state_dir)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        handle.write(encode(journal))
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(temp, self.path)
                except BaseException:
                    _unlink_quietly(temp)
                    raise
            _fsync_dir(self.state_dir)
        except OSError as exc:
            raise StateError(
                f"cannot write journal {self.path}: {exc.strerror}: refusing to change IRQs it could not record"
            ) from None

    def _ensure_dir(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_entry(irq: int, original: str, written: str, chip: str, name: str, file: str) -> JournalEntry:
    return JournalEntry(irq=irq, original=original, written=written, chip=chip, name=name, file=file, time=time.time())


class StateLock:
    """An exclusive ``flock`` on ``STATE_DIR/lock``: one writer at a time."""

    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, LOCKNAME)
        self.fd: Optional[int] = None

    def acquire(self) -> "StateLock":
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            hint = " (run as root, or choose another --state-dir)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
            raise StateError(f"cannot open lock {self.path}: {exc.strerror}{hint}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"process {holder}" if holder else "another process"
                raise StateError(f"{who} holds {self.path}: another irqagent apply, restore or run is active") from None
            raise StateError(f"cannot lock {self.path}: {exc.strerror}") from None
        try:  # who holds it, for the message a second process prints; best effort on a full disk
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "StateLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
