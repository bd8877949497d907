"""Command line: argument parsing, output files, exit statuses.

``main(argv, env)`` never raises: every failure becomes one ``irqagent: error:`` line
on stderr (then the usage, for a usage error) and an exit status (``usage.EXIT_TEXT``).
``Environment`` carries the streams and variables: everything the CLI prints —
reports, errors, usage, ``--help``, ``--version`` — goes through it, so tests run the
real CLI in-process.

Start-up cost matters (``irqagent --version`` and audits are run by scripts and
monitoring): this module imports almost nothing; the grammar (``usage``, argparse) is
imported to parse, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys

from irqagent import PROG, VERSION_TEXT
from irqagent.errors import ExitStatus, IrqagentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Callable, Dict, List, Mapping, Optional, TextIO

    from irqagent.config import Config
    from irqagent.report import Report

INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE, what shells report for a writer whose reader went away


class Environment:
    """What the CLI touches outside its arguments (injectable for tests)."""

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.stdout: TextIO = stdout if stdout is not None else sys.stdout
        self.stderr: TextIO = stderr if stderr is not None else sys.stderr
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ

    @property
    def colour(self) -> bool:
        isatty = getattr(self.stdout, "isatty", lambda: False)
        return bool(isatty()) and "NO_COLOR" not in self.environ and self.environ.get("TERM") != "dumb"


# -- the commands ----------------------------------------------------------------------------


def _load_config(args: Namespace) -> Config:
    from irqagent.config import load_config

    path = getattr(args, "config", None)
    return load_config(path, explicit=path is not None)


def _emit(report: Report, args: Namespace, env: Environment) -> None:
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        import json

        text = json.dumps(report.to_json(), indent=2) + "\n"
    elif fmt == "prometheus":
        from irqagent.render_prometheus import render_prometheus

        text = render_prometheus(report)
    elif fmt == "irqbalance-banned":
        from irqagent.irqbalance import banned_line

        text = banned_line(report)
    else:
        from irqagent.render_text import render_text

        colour = env.colour and not args.output
        text = render_text(report, verbose=args.verbose, quiet=args.quiet, colour=colour)
    if args.output:
        from irqagent.output import write_atomic

        write_atomic(args.output, text)
    else:
        env.stdout.write(text)
        env.stdout.flush()


def _check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise IrqagentError(f"--root {root}: not a directory")


def state_dir_of(args: Namespace, required: bool) -> Optional[str]:
    """``--state-dir``, or the default for the live root.  Another root has no default:
    its journal must not land in (or be read from) the live machine's."""
    from irqagent.paths import DEFAULT_STATE_DIR

    if args.state_dir:
        return str(args.state_dir)
    if os.path.realpath(args.root) == "/":
        return DEFAULT_STATE_DIR
    if required:
        raise IrqagentError(
            f"--root {args.root} needs --state-dir: {DEFAULT_STATE_DIR} holds the journal of the live machine"
        )
    return None


def _warner(env: Environment) -> Callable[[str], None]:
    return lambda message: _write(env.stderr, f"{PROG}: warning: {message}\n")


def cmd_audit(args: Namespace, env: Environment) -> int:
    from irqagent import runner
    from irqagent.journal import JournalStore
    from irqagent.kernel import KernelTree

    _check_root(args.root)
    config = _load_config(args)
    state_dir = state_dir_of(args, required=False)
    store = JournalStore(state_dir) if state_dir else None
    report = runner.audit(KernelTree(args.root), config, store, warn=env.stderr)
    if args.format == "text" and not args.quiet:
        from irqagent.irqbalance import irqbalance_warning

        warning = irqbalance_warning(config, args.root)
        if warning:
            env.stderr.write(f"{PROG}: warning: {warning}\n")
    _emit(report, args, env)
    return report.exit_status


def cmd_apply(args: Namespace, env: Environment) -> int:
    from irqagent import runner
    from irqagent.journal import JournalStore, StateLock
    from irqagent.kernel import KernelTree

    from irqagent.execute import UnrecordedWrites

    _check_root(args.root)
    state_dir = state_dir_of(args, required=not args.dry_run)
    config = _load_config(args)
    if args.dry_run:
        store = JournalStore(state_dir) if state_dir else None
        report = runner.audit(KernelTree(args.root), config, store, command="apply", warn=env.stderr)
    else:
        assert state_dir is not None
        with StateLock(state_dir) as state:
            try:
                report = runner.apply(KernelTree(args.root), config, JournalStore(state), warn=_warner(env))
            except UnrecordedWrites as exc:
                if exc.report is not None:
                    _emit(exc.report, args, env)
                raise
    _emit(report, args, env)
    return report.exit_status


def cmd_restore(args: Namespace, env: Environment) -> int:
    from irqagent import runner
    from irqagent.journal import JournalStore, StateLock
    from irqagent.kernel import KernelTree

    _check_root(args.root)
    state_dir = state_dir_of(args, required=True)
    assert state_dir is not None
    config = _load_config(args)
    if args.dry_run:
        report = runner.restore_all(KernelTree(args.root), config, JournalStore(state_dir), args.force, dry_run=True)
    else:
        with StateLock(state_dir) as state:
            report = runner.restore_all(KernelTree(args.root), config, JournalStore(state), args.force)
    _emit(report, args, env)
    return report.exit_status


def cmd_run(args: Namespace, env: Environment) -> int:
    from irqagent.daemon import run_daemon

    _check_root(args.root)
    args.state_dir = state_dir_of(args, required=True)
    return run_daemon(args, env)


def cmd_snapshot(args: Namespace, env: Environment) -> int:
    from irqagent.snapshot import take_snapshot

    _check_root(args.root)
    count = take_snapshot(args.root, args.dir)
    env.stdout.write(f"snapshot of {args.root}: {count} files in {args.dir}\n")
    return ExitStatus.OK


COMMANDS: Dict[str, Callable[[Namespace, Environment], int]] = {
    "audit": cmd_audit,
    "apply": cmd_apply,
    "restore": cmd_restore,
    "run": cmd_run,
    "snapshot": cmd_snapshot,
}

INTERRUPTED_TEXT = {
    "apply": "interrupted; the journal names every IRQ changed so far ('irqagent restore' puts them back)",
    "restore": "interrupted; IRQs not restored yet are still in the journal (run 'irqagent restore' again)",
    "snapshot": "interrupted; the snapshot is incomplete",
}


def _write(stream: TextIO, text: str) -> None:
    if text:
        stream.write(text)
        stream.flush()


def _silence_broken_stdout(env: Environment) -> None:
    """After EPIPE on the real stdout: point its descriptor at /dev/null so that the
    interpreter's flush at exit does not print a second error.  The ``sys.stdout``
    object itself is left alone."""
    try:
        fd = env.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def main(argv: Optional[List[str]] = None, env: Optional[Environment] = None) -> int:
    """Run one command; return its exit status.  Never raises (but for ``IRQAGENT_DEBUG``)."""
    is_program = env is None
    env = env or Environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: Optional[str] = None
    try:
        if argv == ["--version"]:  # answered before argparse is even imported: scripts ask often
            _write(env.stdout, VERSION_TEXT)
            return ExitStatus.OK
        from irqagent.usage import Stop, parse

        try:
            args = parse(argv)
        except Stop as stop:
            _write(env.stdout, stop.out)
            _write(env.stderr, stop.err)
            return stop.status
        command = args.command
        return int(COMMANDS[args.command](args, env))
    except IrqagentError as exc:
        env.stderr.write(f"{PROG}: error: {exc}\n")
        return int(exc.status)
    except KeyboardInterrupt:
        # The executor journals before it writes, so the journal is consistent at any instant
        # (the same property that survives kill -9); nothing is left to finish here.
        text = INTERRUPTED_TEXT.get(command or "", "interrupted")
        _write(env.stderr, f"{PROG}: {text}\n")
        return INTERRUPTED
    except BrokenPipeError:
        if is_program:
            _silence_broken_stdout(env)
        return BROKEN_PIPE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        env.stderr.write(f"{PROG}: error: {where}{exc.strerror or exc}\n")
        return int(ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if env.environ.get("IRQAGENT_DEBUG"):
            raise
        env.stderr.write(
            f"{PROG}: internal error: {type(exc).__name__}: {exc} (set IRQAGENT_DEBUG=1 for a traceback)\n"
        )
        return int(ExitStatus.ERROR)
