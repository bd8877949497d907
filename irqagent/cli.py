"""Command line: argument parsing, output files, exit statuses.

``main(argv, env)`` never raises: every failure becomes one line on stderr and
exit status 2.  ``Environment`` carries the streams and variables so tests can
run the real CLI in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, TextIO

from irqagent import __version__
from irqagent.config import DEFAULT_PATH, Config, load_config
from irqagent.errors import ExitStatus, IrqagentError
from irqagent.journal import DEFAULT_STATE_DIR, JournalStore, StateLock
from irqagent.kernel import KernelTree
from irqagent.output import write_atomic
from irqagent.render_prometheus import render_prometheus
from irqagent.render_text import render_text
from irqagent.report import Report

FORMATS = ("text", "json", "prometheus", "irqbalance-banned")
FORMAT_HELP = {
    "text": "text (default)",
    "json": "json (schema irqagent.report/1)",
    "prometheus": "prometheus",
    "irqbalance-banned": "irqbalance-banned (an IRQBALANCE_BANNED_CPULIST= line)",
}

EXIT_TEXT = """\
exit status:
  0  every IRQ complies after the run (audit: already complies;
     restore: every journaled IRQ is back to its original)
  1  at least one IRQ does not comply (audit: found; apply: could not be
     fixed; restore: some journaled IRQ was not restored)
  2  could not run: bad usage, bad config, unreadable required input,
     not permitted, state directory locked or unusable"""

MAIN_DESCRIPTION = """\
Keep external interrupts on CPUs their interrupt controller can reach.

In x86 guests without interrupt remapping, an IO-APIC entry or MSI names its
target CPU by APIC ID in 8 bits (15 with the extended destination ID). irqagent
learns every online CPU's APIC ID, classifies each IRQ's controller, and
restricts /proc/irq/*/smp_affinity_list to the CPUs it can really reach."""

MAIN_EPILOG = f"""\
commands:
  audit      report what complies and what apply would change (read-only)
  apply      restrict non-compliant IRQs; --dry-run reports only
  restore    put back the original masks recorded by apply
  run        keep IRQs compliant as CPUs and devices come and go (service)
  snapshot   copy every file irqagent reads, for offline audits and bug reports

files:
  {DEFAULT_PATH}   configuration (TOML; a missing default file means defaults)
  {DEFAULT_STATE_DIR}/journal.json   original masks, written before any change
  {DEFAULT_STATE_DIR}/lock           PID of the one writer (which locks the directory)

{EXIT_TEXT}

Run 'irqagent COMMAND --help' for the options of a command."""


@dataclass
class Environment:
    """What the CLI touches outside its arguments (injectable for tests)."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def colour(self) -> bool:
        isatty = getattr(self.stdout, "isatty", lambda: False)
        return bool(isatty()) and "NO_COLOR" not in self.environ and self.environ.get("TERM") != "dumb"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line plus usage, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise IrqagentError(f"{self.prog}: {message}")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30, width=80)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="irqagent", description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"irqagent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, summary: str, description: str, epilog: str = EXIT_TEXT) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=_formatter
        )

    def root(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--root",
            metavar="DIR",
            default="/",
            help="read (and write) kernel files under DIR instead of / (e.g. a snapshot); default /",
        )

    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            metavar="FILE",
            help=f"configuration file (default {DEFAULT_PATH}; missing default = built-in defaults)",
        )

    def report_options(p: argparse.ArgumentParser, formats=FORMATS) -> None:
        p.add_argument(
            "--format",
            choices=formats,
            default="text",
            help="report format: " + ", ".join(FORMAT_HELP[f] for f in formats),
        )
        p.add_argument("--output", metavar="FILE", help="write the report to FILE atomically instead of stdout")
        p.add_argument("-v", "--verbose", action="store_true", help="text: list every IRQ and the platform notes")
        p.add_argument("-q", "--quiet", action="store_true", help="text: print only the summary line")

    def state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help=f"where the journal of original masks lives (default {DEFAULT_STATE_DIR}; "
            "required with --root other than /)",
        )

    p = command(
        "audit",
        "report compliance; change nothing",
        "Read the guest's CPUs, controllers and IRQs and report, per IRQ, whether its\n"
        "affinity holds CPUs its controller cannot reach and what 'apply' would write.\n"
        "Never writes anything under the root.",
    )
    root(p), config(p), report_options(p)
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"journal to read (read-only) so the audit shows what apply would do (default {DEFAULT_STATE_DIR}; "
        "none with --root other than /)",
    )

    p = command(
        "apply",
        "restrict non-compliant IRQs to reachable CPUs",
        "Write each non-compliant IRQ's smp_affinity_list: its own mask minus\n"
        "unreachable, offline and excluded CPUs (or every allowed CPU when nothing is\n"
        "left), read it back, and report per IRQ. Originals are journaled under\n"
        "--state-dir before the first write; 'irqagent restore' puts them back.\n"
        "A second apply on an unchanged system writes nothing.",
    )
    root(p), config(p), report_options(p), state_dir(p)
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would change")

    p = command(
        "restore",
        "write back the journaled original masks",
        "For every IRQ in the journal that still holds what irqagent wrote, write back\n"
        "its original mask. IRQs changed by someone else since (or now owned by another\n"
        "device) are reported and kept in the journal unless --force. Every entry ends\n"
        "restored or not restored, with the reason: an earlier boot's entries are\n"
        "history (--force restores them), another root's are never used, an original\n"
        "naming CPUs that are no longer possible is restored as far as CPUs remain.",
    )
    root(p), config(p), report_options(p, ("text", "json")), state_dir(p)
    p.add_argument(
        "--force", action="store_true", help="restore every journaled IRQ of this root, whatever it holds now"
    )
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be restored")

    p = command(
        "run",
        "keep IRQs compliant (systemd service)",
        "Apply once, then keep every IRQ compliant: re-apply within a second of kernel\n"
        "uevents (CPU hot-plug, PCI/virtio/net devices, MSI changes) and rescan every\n"
        "--interval seconds. Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING).\n"
        "SIGHUP reloads the config; SIGTERM and SIGINT stop it (exit 0).",
        epilog="exit status:\n  0  stopped by SIGTERM/SIGINT\n  2  bad usage or config at start, "
        "state directory locked or unusable",
    )
    root(p), config(p), state_dir(p)
    p.add_argument("--interval", metavar="SECONDS", type=float, help="rescan period (default 60, or [daemon] interval)")
    p.add_argument("--metrics-file", metavar="FILE", help="write Prometheus metrics to FILE after every pass")
    p.add_argument("--no-uevents", action="store_true", help="do not listen to kernel uevents (rescan only)")

    p = command(
        "snapshot",
        "copy every file irqagent reads into DIR",
        "Copy the files the agent reads (cpuinfo, /proc/irq, /sys/kernel/irq, PCI\n"
        "MSI links, CPUID leaves as text) into DIR, keeping their modes, so that\n"
        "'irqagent audit --root DIR' on any machine reproduces this audit. Pack it with\n"
        "'tar -C DIR -czf guest.tar.gz .' to attach it to a bug report.",
        epilog="exit status:\n  0  snapshot written\n  2  could not read the root or write DIR",
    )
    p.add_argument("dir", metavar="DIR", help="destination directory (created; must be empty if it exists)")
    root(p)
    return parser


def _load_config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None)
    return load_config(path, explicit=path is not None)


def _emit(report: Report, args: argparse.Namespace, env: Environment) -> None:
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        text = json.dumps(report.to_json(), indent=2) + "\n"
    elif fmt == "prometheus":
        text = render_prometheus(report)
    elif fmt == "irqbalance-banned":
        from irqagent.irqbalance import banned_line

        text = banned_line(report)
    else:
        colour = env.colour and not args.output
        text = render_text(report, verbose=args.verbose, quiet=args.quiet, colour=colour)
    if args.output:
        write_atomic(args.output, text)
    else:
        env.stdout.write(text)
        env.stdout.flush()


def _check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise IrqagentError(f"--root {root}: not a directory")


def state_dir_of(args: argparse.Namespace, required: bool) -> Optional[str]:
    """``--state-dir``, or the default for the live root.  Another root has no default:
    its journal must not land in (or be read from) the live machine's."""
    if args.state_dir:
        return args.state_dir
    if os.path.realpath(args.root) == "/":
        return DEFAULT_STATE_DIR
    if required:
        raise IrqagentError(
            f"--root {args.root} needs --state-dir: {DEFAULT_STATE_DIR} holds the journal of the live machine"
        )
    return None


def cmd_audit(args: argparse.Namespace, env: Environment) -> int:
    from irqagent import runner

    _check_root(args.root)
    config = _load_config(args)
    state_dir = state_dir_of(args, required=False)
    store = JournalStore(state_dir) if state_dir else None
    report = runner.audit(KernelTree(args.root), config, store, warn=env.stderr)
    if args.format == "text" and not args.quiet:
        from irqagent.irqbalance import irqbalance_warning

        warning = irqbalance_warning(config, args.root)
        if warning:
            env.stderr.write(f"irqagent: warning: {warning}\n")
    _emit(report, args, env)
    return report.exit_status


def cmd_apply(args: argparse.Namespace, env: Environment) -> int:
    from irqagent import runner
    from irqagent.execute import UnrecordedWrites

    _check_root(args.root)
    state_dir = state_dir_of(args, required=not args.dry_run)
    config = _load_config(args)
    if args.dry_run:
        store = JournalStore(state_dir) if state_dir else None
        report = runner.audit(KernelTree(args.root), config, store, command="apply", warn=env.stderr)
    else:
        with StateLock(state_dir) as state:
            try:
                report = runner.apply(KernelTree(args.root), config, JournalStore(state), warn=_warner(env))
            except UnrecordedWrites as exc:
                if exc.report is not None:
                    _emit(exc.report, args, env)
                raise
    _emit(report, args, env)
    return report.exit_status


def _warner(env: Environment):
    return lambda message: env.stderr.write(f"irqagent: warning: {message}\n")


def cmd_restore(args: argparse.Namespace, env: Environment) -> int:
    from irqagent import runner

    _check_root(args.root)
    state_dir = state_dir_of(args, required=True)
    config = _load_config(args)
    if args.dry_run:
        report = runner.restore_all(KernelTree(args.root), config, JournalStore(state_dir), args.force, dry_run=True)
    else:
        with StateLock(state_dir) as state:
            report = runner.restore_all(KernelTree(args.root), config, JournalStore(state), args.force)
    _emit(report, args, env)
    return report.exit_status


def cmd_run(args: argparse.Namespace, env: Environment) -> int:
    from irqagent.daemon import run_daemon

    _check_root(args.root)
    args.state_dir = state_dir_of(args, required=True)
    return run_daemon(args, env)


def cmd_snapshot(args: argparse.Namespace, env: Environment) -> int:
    from irqagent.snapshot import take_snapshot

    _check_root(args.root)
    count = take_snapshot(args.root, args.dir)
    env.stdout.write(f"snapshot of {args.root}: {count} files in {args.dir}\n")
    return ExitStatus.OK


COMMANDS = {"audit": cmd_audit, "apply": cmd_apply, "restore": cmd_restore, "run": cmd_run, "snapshot": cmd_snapshot}


def main(argv: Optional[List[str]] = None, env: Optional[Environment] = None) -> int:
    env = env or Environment()
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(env.stdout)
            return ExitStatus.ERROR
        return int(COMMANDS[args.command](args, env))
    except IrqagentError as exc:
        env.stderr.write(f"irqagent: error: {exc}\n")
        return int(exc.status)
    except KeyboardInterrupt:
        env.stderr.write("irqagent: interrupted (the journal names every IRQ changed so far: irqagent restore)\n")
        return int(ExitStatus.ERROR)
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return int(ExitStatus.ERROR)
    except SystemExit as exc:  # argparse --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        env.stderr.write(f"irqagent: error: {where}{exc.strerror or exc}\n")
        return int(ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if env.environ.get("IRQAGENT_DEBUG"):
            raise
        env.stderr.write(
            f"irqagent: internal error: {type(exc).__name__}: {exc} (set IRQAGENT_DEBUG=1 for a traceback)\n"
        )
        return int(ExitStatus.ERROR)
