"""Atomic file replacement: the one way the agent replaces a file (report and metrics files,
the journal, masks in a file tree under ``--root``).

One durability policy: a temp file in the same directory (created exclusively, never
through a symlink, with its final mode), written whole and fsynced, renamed over the
file, then the directory fsynced.  Readers see the old file or the new one, whole; after
a crash the disk holds one of them too.  A failure at any step leaves the old file as
it was and no temp file behind.
"""

from __future__ import annotations

import os

from irqagent.errors import IrqagentError

TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def replace_in(dir_fd: int, name: str, data: bytes, mode: int, temp: str) -> None:
    """Replace ``name`` in the directory open as ``dir_fd`` with ``data`` (file mode ``mode``),
    through the temp file ``temp`` in the same directory.  Raises OSError; then ``name`` is
    unchanged (unless only the final fsync of the directory failed) and ``temp`` is gone."""
    fd = os.open(temp, TEMP_FLAGS, mode, dir_fd=dir_fd)
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        renamed = True
    finally:
        if not renamed:
            try:
                os.unlink(temp, dir_fd=dir_fd)  # unlink never follows a symlink
            except OSError:
                pass
    os.fsync(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_directory(path: str) -> int:
    """An fd of the directory ``path`` for :func:`replace_in`; raises OSError."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def replace_path(path: str, data: bytes, mode: int, temp_name: str) -> None:
    """:func:`replace_in` by path: ``temp_name`` is the temp file's name in ``path``'s directory."""
    dir_fd = open_directory(os.path.dirname(os.path.abspath(path)))
    try:
        replace_in(dir_fd, os.path.basename(path), data, mode, temp_name)
    finally:
        os.close(dir_fd)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` (a report or metrics file); raises IrqagentError."""
    temp = f".{os.path.basename(path)}.{os.urandom(6).hex()}"
    try:
        replace_path(path, text.encode("utf-8"), mode, temp)
    except OSError as exc:
        raise IrqagentError(f"cannot write {path}: {exc.strerror or exc}") from None
