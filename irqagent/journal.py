"""The journal of original masks, and the state directory that holds it.

One JSON document, ``STATE_DIR/journal.json``, replaced atomically (temp file,
fsync, rename, fsync of the directory) so that a crash at any moment leaves
either the old or the new journal, never a torn one.  It records the root it
belongs to and that root's boot ID.  Each entry keeps the IRQ's original mask,
the mask the agent last wrote and read back (``written``) and the one it is
about to write (``pending``, journaled before the write and cleared once the
write is read back): a kill at any moment leaves the IRQ holding one of the
three, and ``restore`` recognises all of them.

Decoding is strict (known keys only, typed, bounded: ``MAX_BYTES``); anything
else is a damaged journal, never used to write anything.  A SHA-256 over the
canonical body detects accidental damage (it is not a MAC: the protection
against tampering is the directory's ownership and mode, checked like sshd).

The state directory is opened once, without following a symlink, and checked:
owned by root (or the running user), not writable by group or others, and the
directories above it too.  Every file in it is opened relative to that open
directory with ``O_NOFOLLOW``.  The writers' lock is an ``flock`` on the open
directory itself; ``StateDir.ensure_current`` notices the directory being
removed or replaced (the daemon checks before every pass).
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import stat
import time

from irqagent import cpumask, trust
from irqagent.errors import StateError
from irqagent.journal_entry import MAX_CPUS, JournalEntry
from irqagent.kernel import BOOT_ID_FORM
from irqagent.records import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, Dict, Literal, Mapping, NoReturn, Optional, Tuple, Union

    from irqagent.kernel import KernelTree

    Relation = Literal["current", "stale", "foreign"]

SCHEMA = "irqagent.journal/2"
FILENAME = "journal.json"
LOCKNAME = "lock"  # holds the writer's PID, for the message a second writer prints
TEMP_PREFIX = ".journal."
DEFAULT_AFFINITY_KEY = "default_smp_affinity"
IRQ_FILES = ("smp_affinity_list", "smp_affinity")

MAX_BYTES = 64 << 20  # a journal larger than this is damaged (checked before parsing)
MAX_TEXT = 1 << 18  # any one string (a cpulist of 32,768 alternate CPUs is ~100 KiB)
MAX_IRQ_DIGITS = 9  # IRQ numbers up to 999,999,999, as the reader takes them (kernel.irq_numbers)

TOP_KEYS = frozenset({"schema", "sha256", "root", "boot_id", "entries", DEFAULT_AFFINITY_KEY})
ENTRY_KEYS = frozenset({"original", "written", "pending", "chip", "name", "file", "time"})
O_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW


@frozen
class Scope:
    """Which kernel a journal belongs to: the root (absolute, resolved) and its boot."""

    root: str
    boot_id: Optional[str]


def scope_of(tree: KernelTree) -> Scope:
    """The scope of a ``KernelTree``."""
    return Scope(os.path.realpath(tree.root), tree.boot_id())


@frozen
class Journal:
    entries: Mapping[int, JournalEntry]
    default_affinity: Optional[JournalEntry] = None  # irq = -1
    root: Optional[str] = None
    boot_id: Optional[str] = None

    @property
    def empty(self) -> bool:
        return not self.entries and self.default_affinity is None

    def relation(self, scope: Scope) -> Relation:
        """``current``, ``stale`` (an earlier boot of this root) or ``foreign`` (another root)."""
        if self.empty:
            return "current"
        if self.root != scope.root:
            return "foreign"
        if self.boot_id != scope.boot_id:
            return "stale"
        return "current"

    def describe(self) -> str:
        return f"{len(self.entries) + (self.default_affinity is not None)} entries of root {self.root}"


EMPTY = Journal({})


def fresh(scope: Scope) -> Journal:
    return Journal({}, None, scope.root, scope.boot_id)


def new_entry(
    irq: int, original: str, written: Optional[str], chip: str, name: str, file: str, pending: Optional[str] = None
) -> JournalEntry:
    return JournalEntry(irq, original, written, chip, name, file, time.time(), pending)


# -- encoding ------------------------------------------------------------------------


def _checksum(body: Dict[str, Any]) -> str:
    import hashlib
    import json

    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _entry_dict(entry: JournalEntry) -> Dict[str, Any]:
    return {
        "original": entry.original,
        "written": entry.written,
        "pending": entry.pending,
        "chip": entry.chip,
        "name": entry.name,
        "file": entry.file,
        "time": entry.time,
    }


def _body(journal: Journal) -> Dict[str, Any]:
    return {
        "root": journal.root,
        "boot_id": journal.boot_id,
        "entries": {str(irq): _entry_dict(entry) for irq, entry in sorted(journal.entries.items())},
        DEFAULT_AFFINITY_KEY: _entry_dict(journal.default_affinity) if journal.default_affinity else None,
    }


def encode(journal: Journal) -> str:
    import json

    if not isinstance(journal.root, str):
        raise ValueError("a journal records its root")
    body = _body(journal)
    document = {"schema": SCHEMA, "sha256": _checksum(body), **body}
    return json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"


class _Damaged(Exception):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _Damaged(f"{name} is not a number")


def decode(text: str, where: str = FILENAME) -> Journal:
    """Parse and verify a journal; raise StateError when it is damaged in any way."""
    try:
        return _decode(text)
    except _Damaged as exc:
        raise StateError(f"journal {where} is damaged ({exc}); it is not used. Check it, then move it aside") from None


def _decode(text: str) -> Journal:
    import json

    if len(text) > MAX_BYTES:
        raise _Damaged(f"larger than {MAX_BYTES >> 20} MiB")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _Damaged(f"not JSON: {exc}") from None
    except RecursionError:
        raise _Damaged("nested too deeply") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise _Damaged(f"schema is not {SCHEMA}")
    unknown = sorted(set(document) - TOP_KEYS)
    missing = sorted(TOP_KEYS - set(document))
    if unknown or missing:
        raise _Damaged(f"unknown keys {unknown}" if unknown else f"missing keys {missing}")
    body = {key: document[key] for key in TOP_KEYS - {"schema", "sha256"}}
    if document["sha256"] != _checksum(body):
        raise _Damaged("checksum mismatch")
    root, boot_id = body["root"], body["boot_id"]
    if not isinstance(root, str) or not root.startswith("/") or len(root) > 4096 or "\0" in root:
        raise _Damaged("root is not an absolute path")
    if boot_id is not None and not (isinstance(boot_id, str) and BOOT_ID_FORM.fullmatch(boot_id)):
        raise _Damaged("boot_id is not a boot ID")
    if not isinstance(body["entries"], dict):
        raise _Damaged("entries is not an object")
    entries: Dict[int, JournalEntry] = {}
    for key, raw in body["entries"].items():
        if not (cpumask.is_decimal(key) and len(key) <= MAX_IRQ_DIGITS) or str(int(key)) != key:
            raise _Damaged(f"IRQ key {key[:20]!r} is not an IRQ number")
        entries[int(key)] = _entry(int(key), raw, IRQ_FILES)
    default = body[DEFAULT_AFFINITY_KEY]
    default_entry = _entry(-1, default, (DEFAULT_AFFINITY_KEY,)) if default is not None else None
    return Journal(entries, default_entry, root, boot_id)


def _entry(irq: int, raw: object, files: Tuple[str, ...]) -> JournalEntry:
    what = "the default_smp_affinity entry" if irq < 0 else f"entry for IRQ {irq}"
    if not isinstance(raw, dict) or set(raw) != ENTRY_KEYS:
        raise _Damaged(f"{what} is malformed (keys must be {sorted(ENTRY_KEYS)})")
    for key in ("original", "chip", "name", "file"):
        if not isinstance(raw[key], str) or len(raw[key]) > MAX_TEXT:
            raise _Damaged(f"{what}: {key} is not a string of at most {MAX_TEXT} characters")
    for key in ("written", "pending"):
        if raw[key] is not None and (not isinstance(raw[key], str) or len(raw[key]) > MAX_TEXT):
            raise _Damaged(f"{what}: {key} is neither null nor a string of at most {MAX_TEXT} characters")
    if raw["written"] is None and raw["pending"] is None:
        raise _Damaged(f"{what}: neither written nor pending")
    if raw["file"] not in files:
        raise _Damaged(f"{what}: file {raw['file'][:40]!r} is not one of {', '.join(files)}")
    moment = raw["time"]
    try:
        moment = float(moment) if isinstance(moment, (int, float)) and not isinstance(moment, bool) else math.nan
    except OverflowError:  # an integer beyond any float
        moment = math.nan
    if not math.isfinite(moment) or moment < 0:
        raise _Damaged(f"{what}: time is not a finite number")
    for key in ("original", "written", "pending"):
        if raw[key] is not None:
            try:
                cpumask.parse_for_file(raw[key], raw["file"], MAX_CPUS)
            except cpumask.CpumaskError as exc:
                raise _Damaged(f"{what}: {key}: {exc}") from None
    return JournalEntry(
        irq, raw["original"], raw["written"], raw["chip"], raw["name"], raw["file"], moment, raw["pending"]
    )


# -- the state directory ------------------------------------------------------------------


class JournalWriteError(StateError):
    """The journal could not be saved (ENOSPC, EIO, read-only...): ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot write journal {path}: {reason}")
        self.reason = reason


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


class StateDir:
    """The state directory, opened once; every file in it is reached through ``fd``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None
        self.locked = False
        self._identity: Optional[Tuple[int, int]] = None

    def __repr__(self) -> str:
        return f"StateDir(path={self.path!r}, fd={self.fd!r}, locked={self.locked!r})"

    def open(self, create: bool) -> bool:
        """Open (and with ``create`` make, 0700) the directory and check it can be trusted.
        False when it does not exist and ``create`` is not set."""
        if self.fd is not None:
            return True
        if create:
            try:
                os.makedirs(self.path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create state directory {self.path}: {_strerror(exc)}{_hint(exc)}") from None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | O_OPEN)
        except FileNotFoundError:
            if create:
                raise StateError(f"state directory {self.path} vanished while it was opened") from None
            return False
        except OSError as exc:
            # O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR, not ELOOP
            symlink = exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.path)
            why = "is a symlink (not followed)" if symlink else _strerror(exc)
            raise StateError(f"cannot open state directory {self.path}: {why}{_hint(exc)}") from None
        info = os.fstat(fd)
        found = trust.problem(info, f"state directory {self.path}") or trust.parents_problem(self.path)
        if found:
            os.close(fd)
            raise StateError(f"{found}: refusing to use it (chown root and chmod go-w to fix)")
        self.fd = fd
        self._identity = (info.st_dev, info.st_ino)
        return True

    def lock(self) -> "StateDir":
        """Open (creating) and take the exclusive writers' lock, or raise StateError."""
        self.open(create=True)
        assert self.fd is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = self._read_pid()
                who = f"process {holder}" if holder else "another process"
                raise StateError(f"{who} holds {self.path}: another irqagent apply, restore or run is active") from None
            raise StateError(f"cannot lock {self.path}: {_strerror(exc)}") from None
        self.locked = True
        self._write_pid()
        return self

    def ensure_current(self) -> None:
        """Make sure ``path`` is still the directory this object opened and locked.  When it
        was removed or replaced, lock what is there now (creating it) or raise StateError:
        removing the state directory never lets a second writer in beside this one."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
            if (info.st_dev, info.st_ino) == self._identity:
                return
        except OSError:
            pass
        replacement = StateDir(self.path)
        try:
            replacement.lock()
        except StateError as exc:
            replacement.close()
            raise StateError(f"state directory {self.path} was removed or replaced: {exc}") from None
        self.close()
        self.fd, self.locked, self._identity = replacement.fd, True, replacement._identity
        replacement.fd = None  # now ours: its __del__ must not close it

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.locked = None, False

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "StateDir":
        return self.lock()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_pid(self) -> None:
        """Best effort: never through a symlink, never into anything but our own regular file."""
        try:
            fd = os.open(LOCKNAME, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | O_OPEN, 0o600, dir_fd=self.fd)
        except OSError:
            return
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid in trust.SAFE_OWNERS:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def _read_pid(self) -> str:
        try:
            fd = os.open(LOCKNAME, os.O_RDONLY | os.O_NONBLOCK | O_OPEN, dir_fd=self.fd)
        except OSError:
            return ""
        try:
            text = os.read(fd, 32).decode(errors="replace").strip() if stat.S_ISREG(os.fstat(fd).st_mode) else ""
        except OSError:
            text = ""
        finally:
            os.close(fd)
        return text if cpumask.is_decimal(text) else ""

    def remove_stray_temps(self) -> int:
        """Remove ``.journal.*`` temp files a killed writer left (only under the lock)."""
        if not self.locked:
            return 0
        removed = 0
        for name in os.listdir(self.fd):
            if name.startswith(TEMP_PREFIX):
                try:
                    os.unlink(name, dir_fd=self.fd)  # unlink never follows a symlink
                    removed += 1
                except OSError:
                    pass
        return removed


def _hint(exc: OSError) -> str:
    return " (run as root, or choose another --state-dir)" if exc.errno in (errno.EACCES, errno.EPERM) else ""


class StateLock(StateDir):
    """``with StateLock(path) as state:`` -- the state directory, locked."""


class JournalStore:
    """Load and save the journal in a state directory (a path, or an open ``StateDir``)."""

    def __init__(self, state: Union[str, StateDir]):
        self.state = state if isinstance(state, StateDir) else StateDir(state)
        self.state_dir = self.state.path
        self.path = os.path.join(self.state.path, FILENAME)

    def load(self) -> Journal:
        if not self.state.open(create=False):
            return EMPTY
        try:
            fd = os.open(FILENAME, os.O_RDONLY | os.O_NONBLOCK | O_OPEN, dir_fd=self.state.fd)
        except FileNotFoundError:
            return EMPTY
        except OSError as exc:
            why = "it is a symlink (not followed)" if exc.errno == errno.ELOOP else _strerror(exc)
            raise StateError(f"cannot read journal {self.path}: {why}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StateError(f"journal {self.path} is not a regular file; it is not used. Move it aside")
            if info.st_size > MAX_BYTES:
                raise StateError(f"journal {self.path} is damaged (larger than {MAX_BYTES >> 20} MiB); it is not used")
            chunks, size = [], 0
            while size <= MAX_BYTES:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise StateError(f"cannot read journal {self.path}: {_strerror(exc)}") from None
        finally:
            os.close(fd)
        try:
            text = b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise StateError(f"journal {self.path} is damaged (not UTF-8); it is not used") from None
        return decode(text, self.path)

    def save(self, journal: Journal) -> None:
        """Replace the journal atomically and durably (or remove it when empty)."""
        from irqagent.output import replace_in  # the writers' module: read-only commands do not load it

        self.state.open(create=True)
        dir_fd = self.state.fd
        assert dir_fd is not None
        try:
            if journal.empty:
                try:
                    os.unlink(FILENAME, dir_fd=dir_fd)
                except FileNotFoundError:
                    return
                os.fsync(dir_fd)
            else:
                replace_in(dir_fd, FILENAME, encode(journal).encode(), 0o600, TEMP_PREFIX + os.urandom(8).hex())
        except OSError as exc:
            raise JournalWriteError(self.path, _strerror(exc)) from None
