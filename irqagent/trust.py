"""Whose files the agent trusts: the rule sshd's StrictModes applies.

The agent runs as root and acts on its config and its state directory.  A file
or directory that another user owns, or that group or others can write, could
be swapped under it, so it is refused.  The directories leading to it must be
owned by root (or by the running user) and not writable by group or others,
except sticky directories such as ``/tmp`` (others there cannot rename or
remove what they do not own).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Optional

SAFE_OWNERS = frozenset({0, os.geteuid()})


def problem(info: os.stat_result, what: str, allow_sticky: bool = False) -> Optional[str]:
    """Why ``info`` (of ``what``) cannot be trusted, or None."""
    if info.st_uid not in SAFE_OWNERS:
        return f"{what} is owned by uid {info.st_uid}, not by root"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if allow_sticky and stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
            return None
        return f"{what} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def parents_problem(path: str) -> Optional[str]:
    """Why a directory holding ``path`` (its parent, and so on up to ``/``; symlinks
    resolved) cannot be trusted, or None."""
    current = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            return f"cannot check {current}: {exc.strerror}"
        found = problem(info, f"directory {current}", allow_sticky=True)
        if found:
            return found
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
