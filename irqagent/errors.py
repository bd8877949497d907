"""Exit statuses and the one exception type that means "could not run"."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """The process exit status of every subcommand (SPEC: exit status)."""

    OK = 0  # every IRQ complies after the run
    NONCOMPLIANT = 1  # at least one IRQ does not comply (or could not be fixed/restored)
    ERROR = 2  # could not run: usage, config, required input, permission, lock, interrupted


class IrqagentError(Exception):
    """A condition that stops the run with exit status 2 and one line on stderr.

    The message is complete and meant for the operator: what failed, where, why.
    """

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR):
        super().__init__(message)
        self.status = status


class InputError(IrqagentError):
    """A required kernel file is missing, unreadable or malformed."""


class ConfigError(IrqagentError):
    """The configuration file is missing (when named explicitly) or invalid."""


class StateError(IrqagentError):
    """The state directory or journal cannot be used safely."""
