"""The command-line grammar: argparse parsers, help texts, usage errors.

Nothing here prints: ``--help``, ``--version`` and usage errors raise :class:`Stop`,
which carries the text, the stream it belongs on and the exit status, so that
``cli.main`` writes it through its ``Environment``.  Only the named command's options
are built (``build_parser(commands=...)``): a run pays for one subcommand.
"""

from __future__ import annotations

import argparse

from irqagent import PROG, VERSION_TEXT
from irqagent.errors import ExitStatus
from irqagent.paths import DEFAULT_CONFIG, DEFAULT_STATE_DIR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NoReturn, Sequence

FORMATS = ("text", "json", "prometheus", "irqbalance-banned")
FORMAT_HELP = {
    "text": "text (default)",
    "json": "json (schema irqagent.report/2)",
    "prometheus": "prometheus (node_exporter textfile)",
    "irqbalance-banned": "irqbalance-banned (an IRQBALANCE_BANNED_CPULIST= line)",
}

EXIT_TEXT = """\
exit status:
  0    every IRQ complies after the run (audit: already complies;
       restore: every journaled IRQ is back to its original)
  1    at least one IRQ does not comply (audit: found; apply: could not be
       fixed; restore: some journaled IRQ was not restored)
  2    could not run: bad usage, bad config, unreadable required input,
       not permitted, state directory locked or unusable
  130  interrupted (SIGINT); the journal names every IRQ changed so far
  141  the reader of the output went away (broken pipe)"""

RUN_EXIT_TEXT = """\
exit status:
  0    stopped by SIGTERM or SIGINT
  2    bad usage or config at start, state directory locked or unusable"""

SNAPSHOT_EXIT_TEXT = """\
exit status:
  0    snapshot written
  2    could not read the root or write DIR
  130  interrupted (SIGINT): DIR holds a partial snapshot"""

MAIN_DESCRIPTION = """\
Keep external interrupts on CPUs their interrupt controller can reach.

In x86 guests without interrupt remapping, an IO-APIC entry or MSI names its
target CPU by APIC ID in 8 bits (15 with the extended destination ID). irqagent
learns every online CPU's APIC ID, classifies each IRQ's controller, and
restricts /proc/irq/*/smp_affinity_list to the CPUs it can really reach."""

COMMAND_SUMMARIES = (
    ("audit", "report what complies and what apply would change (read-only)"),
    ("apply", "restrict non-compliant IRQs; --dry-run reports only"),
    ("restore", "put back the original masks recorded by apply"),
    ("run", "keep IRQs compliant as CPUs and devices come and go (service)"),
    ("snapshot", "copy every file irqagent reads, for offline audits and bug reports"),
)
COMMAND_NAMES = tuple(name for name, _ in COMMAND_SUMMARIES)

MAIN_EPILOG = (
    "commands:\n"
    + "".join(f"  {name:<10} {summary}\n" for name, summary in COMMAND_SUMMARIES)
    + f"""
files:
  {DEFAULT_CONFIG:<32} configuration (TOML; a missing default file
  {"":<32} means built-in defaults)
  {DEFAULT_STATE_DIR + "/journal.json":<32} original masks, written before any change
  {DEFAULT_STATE_DIR + "/lock":<32} PID of the one writer (which locks the directory)

environment:
  NO_COLOR        no colour in the text report (nor with TERM=dumb or when
                  stdout is not a terminal)
  IRQAGENT_DEBUG  print a traceback on an internal error

{EXIT_TEXT}

Run 'irqagent COMMAND --help' for the options of a command."""
)


class Stop(Exception):
    """Parsing ended early: print ``out`` on stdout and ``err`` on stderr, exit ``status``."""

    def __init__(self, status: int, out: str = "", err: str = ""):
        super().__init__(err or out)
        self.status = status
        self.out = out
        self.err = err


def usage_error(parser: argparse.ArgumentParser, message: str) -> Stop:
    """One ``irqagent: error:`` line, the usage of the (sub)command, and where to read more."""
    command = parser.prog[len(PROG) :].strip()
    where = f"{command}: " if command else ""
    more = f"Try '{parser.prog} --help' for more information.\n"
    return Stop(ExitStatus.ERROR, err=f"{PROG}: error: {where}{message}\n{parser.format_usage()}{more}")


class _Parser(argparse.ArgumentParser):
    """argparse that prints nothing itself: help, version and usage errors become ``Stop``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: Dict[str, argparse.ArgumentParser] = {}  # the main parser's subcommand parsers

    def error(self, message: str) -> NoReturn:
        raise usage_error(self, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise Stop(status, err=message or "")


class _Answer(argparse.Action):
    """An option that answers on stdout and ends the run with status 0 (``--help``, ``--version``)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: Any = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def answer(self, parser: argparse.ArgumentParser) -> str:
        raise NotImplementedError

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        raise Stop(ExitStatus.OK, out=self.answer(parser))


class _Help(_Answer):
    def answer(self, parser: argparse.ArgumentParser) -> str:
        return parser.format_help()


class _Version(_Answer):
    def answer(self, parser: argparse.ArgumentParser) -> str:
        return VERSION_TEXT


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30, width=80)


# -- options shared by several commands ------------------------------------------------------


def _root(p: argparse.ArgumentParser, writes: bool) -> None:
    what = "read (and write)" if writes else "read"
    p.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help=f"{what} kernel files under DIR instead of / (e.g. a snapshot); default /",
    )


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG}; a missing default file means built-in defaults)",
    )


def _report(p: argparse.ArgumentParser, formats: Sequence[str] = FORMATS) -> None:
    p.add_argument(
        "--format",
        metavar="FORMAT",
        choices=formats,
        default="text",
        help="report format: " + ", ".join(FORMAT_HELP[f] for f in formats),
    )
    p.add_argument("--output", metavar="FILE", help="write the report to FILE atomically instead of stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="text: list every IRQ and the platform notes")
    p.add_argument("-q", "--quiet", action="store_true", help="text: print only the summary line")


def _state_dir(
    p: argparse.ArgumentParser,
    purpose: str = "where the journal of original masks lives",
    other_root: str = "required with --root other than /",
) -> None:
    p.add_argument("--state-dir", metavar="DIR", help=f"{purpose} (default {DEFAULT_STATE_DIR}; {other_root})")


# -- one function per command: its description, epilog and options ----------------------------


def _audit(p: argparse.ArgumentParser) -> None:
    _root(p, writes=False)
    _config(p)
    _report(p)
    _state_dir(
        p, "journal to read (read-only), so the audit shows what apply would do", "none with --root other than /"
    )


def _apply(p: argparse.ArgumentParser) -> None:
    _root(p, writes=True)
    _config(p)
    _report(p)
    _state_dir(p)
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would change (as audit)")


def _restore(p: argparse.ArgumentParser) -> None:
    _root(p, writes=True)
    _config(p)
    _report(p, ("text", "json"))
    _state_dir(p)
    p.add_argument(
        "--force", action="store_true", help="restore every journaled IRQ of this root, whatever it holds now"
    )
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be restored")


def _run(p: argparse.ArgumentParser) -> None:
    _root(p, writes=True)
    _config(p)
    _state_dir(p)
    p.add_argument(
        "--interval", metavar="SECONDS", type=float, help="rescan period (default [daemon] interval, else 60)"
    )
    p.add_argument(
        "--metrics-file",
        metavar="FILE",
        help="write Prometheus metrics to FILE after every pass (default [daemon] metrics_file, else none)",
    )
    p.add_argument("--no-uevents", action="store_true", help="do not listen to kernel uevents (rescan only)")


def _snapshot(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="destination directory (created; must be empty if it exists)")
    _root(p, writes=False)


COMMANDS: Dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    # name: (description, epilog, options)
    "audit": (
        "Read the guest's CPUs, controllers and IRQs and report, per IRQ, whether its\n"
        "affinity holds CPUs its controller cannot reach and what 'apply' would write.\n"
        "Never writes anything under the root or in the state directory.",
        "examples:\n"
        "  irqagent audit                        this machine, a text report\n"
        "  irqagent audit -q                     only the summary line\n"
        "  irqagent audit --root SNAPSHOT_DIR    a snapshot taken elsewhere\n"
        "  irqagent audit --format json --output /run/irqagent.json\n\n" + EXIT_TEXT,
        _audit,
    ),
    "apply": (
        "Write each non-compliant IRQ's smp_affinity_list: its own mask minus\n"
        "unreachable, offline and excluded CPUs (or every allowed CPU when nothing is\n"
        "left), read it back, and report per IRQ. Originals are journaled under\n"
        "--state-dir before the first write; 'irqagent restore' puts them back.\n"
        "A second apply on an unchanged system writes nothing.",
        "examples:\n"
        "  irqagent apply --dry-run              what would be written\n"
        "  irqagent apply -q                     fix, print the summary line\n"
        "  irqagent apply --format json --output /run/irqagent.json\n\n" + EXIT_TEXT,
        _apply,
    ),
    "restore": (
        "For every IRQ in the journal that still holds what irqagent wrote, write back\n"
        "its original mask. IRQs changed by someone else since (or now owned by another\n"
        "device) are reported and kept in the journal unless --force. Every entry ends\n"
        "restored or not restored, with the reason: an earlier boot's entries are\n"
        "history (--force restores them), another root's are never used, an original\n"
        "naming CPUs that are no longer possible is restored as far as CPUs remain.",
        "examples:\n"
        "  irqagent restore                      undo what apply changed\n"
        "  irqagent restore --force              also IRQs changed by someone else since\n\n" + EXIT_TEXT,
        _restore,
    ),
    "run": (
        "Apply once, then keep every IRQ compliant: re-apply within a second of kernel\n"
        "uevents (CPU hot-plug, PCI/virtio/net devices, MSI changes) and rescan every\n"
        "--interval seconds. Speaks sd_notify (READY, STATUS, WATCHDOG, STOPPING).\n"
        "SIGHUP reloads the config, SIGUSR1 asks for a pass now; SIGTERM and SIGINT\n"
        "stop it. Logs go to stderr (with <N> syslog priorities under systemd).",
        RUN_EXIT_TEXT,
        _run,
    ),
    "snapshot": (
        "Copy the files the agent reads (cpuinfo, /proc/irq, /sys/kernel/irq, PCI\n"
        "MSI links, CPUID leaves as text) into DIR, keeping their modes, so that\n"
        "'irqagent audit --root DIR' on any machine reproduces this audit. Pack it with\n"
        "'tar -C DIR -czf guest.tar.gz .' to attach it to a bug report.",
        "example:\n  irqagent snapshot /tmp/snap && tar -C /tmp/snap -czf guest.tar.gz .\n\n" + SNAPSHOT_EXIT_TEXT,
        _snapshot,
    ),
}


def build_parser(commands: Sequence[str] = COMMAND_NAMES) -> _Parser:
    """The parser; only the subcommands named in ``commands`` get their options."""
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] COMMAND [OPTION...]",
        description=MAIN_DESCRIPTION,
        epilog=MAIN_EPILOG,
        formatter_class=_formatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_Help, help="show this help and exit")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    # The commands are listed once, in the epilog (argparse's list would repeat them).
    subparsers = parser.add_subparsers(
        prog=PROG, dest="command", metavar="COMMAND", parser_class=_Parser, help=argparse.SUPPRESS
    )
    for name in COMMAND_NAMES:
        description, epilog, options = COMMANDS[name]
        sub = subparsers.add_parser(
            name, description=description, epilog=epilog, formatter_class=_formatter, add_help=False
        )
        sub.add_argument("-h", "--help", action=_Help, help="show this help and exit")
        if name in commands:
            options(sub)
        parser.commands[name] = sub
    return parser


def _short_usage(parser: argparse.ArgumentParser) -> str:
    return f"{parser.format_usage()}commands: {', '.join(COMMAND_NAMES)}\nTry '{PROG} --help' for more information.\n"


def _no_command(parser: argparse.ArgumentParser) -> Stop:
    return Stop(ExitStatus.ERROR, err=f"{PROG}: error: no command given\n{_short_usage(parser)}")


def _close_match(word: str, candidates: Sequence[str], cutoff: float) -> str | None:
    import difflib  # only on a usage error

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def parse(argv: List[str]) -> argparse.Namespace:
    """The arguments of one run, or :class:`Stop` (help, version, usage error)."""
    named = [word for word in argv if word in COMMAND_NAMES][:1]  # usually argv[0]
    parser = build_parser(named)
    if not argv:
        raise _no_command(parser)
    if argv[0] not in COMMAND_NAMES and not argv[0].startswith("-"):
        close = _close_match(argv[0], COMMAND_NAMES, cutoff=0.6)
        hint = f" (did you mean '{close}'?)" if close else ""
        raise Stop(ExitStatus.ERROR, err=f"{PROG}: error: unknown command '{argv[0]}'{hint}\n{_short_usage(parser)}")
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = parser.commands.get(args.command or "", parser)
        message = f"unrecognized arguments: {' '.join(extra)}"
        known = [
            option
            for action in sub._actions  # argparse keeps no public list of options
            for option in action.option_strings
        ]
        options = [word.split("=", 1)[0] for word in extra if word.startswith("-")]
        early = [option for option in options if option in known]  # given before the command
        close = _close_match(options[0], known, cutoff=0.75) if options and not early else None
        if early:
            message += f" (options go after the command: {PROG} {args.command} {early[0]} ...)"
        elif close:
            message += f" (did you mean '{close}'?)"
        raise usage_error(sub, message)
    if args.command is None:
        raise _no_command(parser)
    return args
