"""The one atomic-replace helper: the old file or the new one, whole; nothing left behind on failure."""

import errno
import os
import stat

import pytest

from irqagent import output
from irqagent.errors import IrqagentError


def listing(directory):
    return sorted(os.listdir(directory))


def test_replaces_the_file_whole_with_its_mode(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old\n")
    old_umask = os.umask(0o077)  # the mode asked for wins over the umask
    try:
        output.write_atomic(str(path), "new ünïcode\n", mode=0o644)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == "new ünïcode\n".encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert listing(tmp_path) == ["report.json"]


def test_creates_a_missing_file(tmp_path):
    output.write_atomic(str(tmp_path / "metrics.prom"), "x 1\n")
    assert (tmp_path / "metrics.prom").read_text() == "x 1\n"
    assert listing(tmp_path) == ["metrics.prom"]


def test_durability_order_file_fsync_rename_then_directory_fsync(tmp_path, monkeypatch):
    """The file's data is on disk before the rename, and the rename before the call returns."""
    path = tmp_path / "journal.json"
    path.write_text("old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file:" + open(f"/proc/self/fd/{fd}").read()
        events.append(("fsync", kind))
        real_fsync(fd)

    def replace(src, dst, **kwargs):
        events.append(("rename", path.read_text()))  # the old file is still in place until here
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(output.os, "fsync", fsync)
    monkeypatch.setattr(output.os, "replace", replace)
    output.write_atomic(str(path), "new")
    assert events == [("fsync", "file:new"), ("rename", "old"), ("fsync", "dir")]
    assert path.read_text() == "new"


@pytest.mark.parametrize("step", ["write", "fsync", "rename"])
def test_a_failure_in_the_middle_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, step):
    path = tmp_path / "out.txt"
    path.write_text("old contents\n")

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"write": (output, "_write_all"), "fsync": (output.os, "fsync"), "rename": (output.os, "replace")}[step]
    monkeypatch.setattr(*target, fail)
    with pytest.raises(IrqagentError) as caught:
        output.write_atomic(str(path), "new contents\n")
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert path.read_text() == "old contents\n"
    assert listing(tmp_path) == ["out.txt"]


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    """os.write may take part of the data: the rest is written, not lost."""
    real_write = os.write
    monkeypatch.setattr(output.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    output.write_atomic(str(tmp_path / "f"), "0123456789")
    assert (tmp_path / "f").read_text() == "0123456789"


def test_never_writes_through_a_symlinked_temp_name(tmp_path):
    """A symlink planted at the temp name is not followed: the call fails, its target is untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / ".tmp")
    dir_fd = output.open_directory(str(tmp_path))
    try:
        with pytest.raises(OSError):
            output.replace_in(dir_fd, "file", b"data", 0o600, ".tmp")
    finally:
        os.close(dir_fd)
    assert victim.read_text() == "precious" and not (tmp_path / "file").exists()


def test_a_missing_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(IrqagentError, match=r"^cannot write .*/nowhere/out: No such file or directory$"):
        output.write_atomic(str(tmp_path / "nowhere" / "out"), "x")
