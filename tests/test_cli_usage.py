"""The command line as admins expect it: streams, usage errors, suggestions, help, signals, pipes."""

import argparse
import io
import os
import re
import signal
import subprocess
import sys

import pytest

from irqagent import __version__
from irqagent.cli import Environment, main
from irqagent.usage import COMMAND_NAMES, build_parser

from conftest import REPO, read


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Environment(stdout=out, stderr=err, environ={}))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "argv",
    [[], ["--version"], ["--vers"], ["--help"], ["audit", "--help"], ["audti"], ["audit", "--format", "yaml"]],
)
def test_every_stream_goes_through_the_environment(argv, capsys):
    run(*argv)
    assert capsys.readouterr() == ("", "")  # nothing reached the process's own stdout or stderr


def test_version_both_ways():
    assert run("--version") == (0, f"irqagent {__version__}\n", "")
    assert run("--vers") == run("--version")  # argparse's abbreviation gives the same answer


def test_help_goes_to_stdout_and_exits_0():
    code, out, err = run("--help")
    assert (code, err) == (0, "")
    assert out.startswith("usage: irqagent ") and "exit status:" in out
    for name in COMMAND_NAMES:
        assert re.search(rf"^  {name} +\S", out, re.M), name  # each command listed once, with a summary
        assert len(re.findall(rf"^  {name} ", out, re.M)) == 1


def test_no_command_is_a_short_usage_and_exit_2():
    code, out, err = run()
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0] == "irqagent: error: no command given"
    assert any(line.startswith("usage: irqagent ") for line in lines)
    assert "audit, apply, restore, run, snapshot" in err and "irqagent --help" in err
    assert len(lines) <= 5


@pytest.mark.parametrize(
    "argv, first_line",
    [
        (["audti"], "irqagent: error: unknown command 'audti' (did you mean 'audit'?)"),
        (["restor"], "irqagent: error: unknown command 'restor' (did you mean 'restore'?)"),
        (["snapshto", "/tmp/x"], "irqagent: error: unknown command 'snapshto' (did you mean 'snapshot'?)"),
        (["frobnicate"], "irqagent: error: unknown command 'frobnicate'"),
        (["apply", "--dryrun"], "irqagent: error: apply: unrecognized arguments: --dryrun (did you mean '--dry-run'?)"),
        (
            ["run", "--metric-file", "x"],
            "irqagent: error: run: unrecognized arguments: --metric-file x (did you mean '--metrics-file'?)",
        ),
        (["audit", "--bogus"], "irqagent: error: audit: unrecognized arguments: --bogus"),
        (
            ["-q", "audit"],
            "irqagent: error: audit: unrecognized arguments: -q (options go after the command: irqagent audit -q ...)",
        ),
        (
            ["audit", "--format", "yaml"],
            "irqagent: error: audit: argument --format: invalid choice: 'yaml' "
            "(choose from 'text', 'json', 'prometheus', 'irqbalance-banned')",
        ),
        (["snapshot"], "irqagent: error: snapshot: the following arguments are required: DIR"),
    ],
)
def test_usage_errors_one_prefix_a_suggestion_and_the_commands_usage(argv, first_line):
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0] == first_line
    assert err.count("irqagent: error:") == 1 and "error: irqagent" not in err
    command = next((word for word in argv if word in COMMAND_NAMES), None)
    usage = f"usage: irqagent {command} " if command else "usage: irqagent "
    assert lines[1].startswith(usage)
    assert lines[-1] == f"Try 'irqagent{' ' + command if command else ''} --help' for more information."


def test_each_command_has_a_man_page_quality_help():
    parser = build_parser()
    for name in COMMAND_NAMES:
        code, out, err = run(name, "--help")
        assert (code, err) == (0, ""), name
        assert out.startswith(f"usage: irqagent {name} ")
        assert "exit status:" in out and re.search(r"^  0 ", out, re.M) and re.search(r"^  2 ", out, re.M)
        assert max(len(line) for line in out.splitlines()) <= 80
        for action in parser.commands[name]._actions:
            for option in action.option_strings:
                assert option in out, (name, option)
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert f"default {action.default}" in action.help or "(default)" in action.help, (name, action.dest)


# -- README's synopsis is the parser's ------------------------------------------------------


def readme_synopsis():
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    block = readme.split("## Commands\n\n```\n", 1)[1].split("```", 1)[0]
    return [line.split() for line in block.splitlines() if line.strip()]


def synopsis_of(words):
    """(options -> metavar or None, positionals) of one synopsis line."""
    text = " ".join(words[2:])
    options = {}
    for group in re.findall(r"\[([^\]]+)\]", text):
        for alternative in group.split("|"):
            parts = alternative.split()
            options[parts[0]] = parts[1] if len(parts) > 1 else None
    positionals = re.sub(r"\[[^\]]+\]", "", text).split()
    return options, positionals


def parser_synopsis(sub):
    options, positionals = {}, []
    for action in sub._actions:
        if "-h" in action.option_strings:
            continue
        if not action.option_strings:
            positionals.append(action.metavar)
            continue
        options[tuple(action.option_strings)] = action.metavar if action.nargs != 0 else None
    return options, positionals


def test_readme_synopsis_matches_the_parser():
    lines = readme_synopsis()
    by_command = {words[1]: words for words in lines if len(words) > 1 and words[1] in COMMAND_NAMES}
    assert sorted(by_command) == sorted(COMMAND_NAMES)
    assert ["irqagent", "--version"] in lines
    parser = build_parser()
    for name, words in by_command.items():
        written, positionals = synopsis_of(words)
        options, wanted_positionals = parser_synopsis(parser.commands[name])
        assert positionals == wanted_positionals, name
        for strings, metavar in options.items():
            shown = [option for option in strings if option in written]
            assert len(shown) == 1, f"README's synopsis of {name} lacks {'/'.join(strings)}"
            assert written[shown[0]] == metavar, f"{name} {shown[0]}: README {written[shown[0]]}, parser {metavar}"
        every = {option for strings in options for option in strings}
        assert set(written) <= every, f"README's synopsis of {name} names options the parser lacks"


# -- signals and pipes ----------------------------------------------------------------------


def test_broken_pipe_exits_141_quietly_and_leaves_sys_stdout_alone(tree):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    before = sys.stdout
    argv = ["audit", "--root", tree("qemu-kvm-256"), "--state-dir", "/nonexistent"]
    code = main(argv, Environment(Closed(), io.StringIO(), {}))
    assert code == 141 and sys.stdout is before


def test_broken_pipe_in_a_real_process(tree):
    """``irqagent audit -v | head -0``: the reader is gone before the report is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "irqagent",
                "audit",
                "-v",
                "--root",
                tree("cloud-hypervisor-320"),
                "--state-dir",
                "/nonexistent",
            ],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert process.returncode == 141
    assert process.stderr == ""  # no "Exception ignored ... BrokenPipeError" at exit


def test_ctrl_c_in_the_middle_of_apply_exits_130_and_restore_undoes_it(tree, tmp_path, monkeypatch):
    """A KeyboardInterrupt at the fourth write: exit 130, and the journal on disk already names every
    IRQ written so far, so restore brings all of them back."""
    from irqagent.kernel import KernelTree

    root = tree("cloud-hypervisor-320")
    state = str(tmp_path / "state")
    writes = []
    real_write = KernelTree.write_affinity

    def write_then_interrupt(self, irq, text, filename="smp_affinity_list"):
        if len(writes) == 3:
            raise KeyboardInterrupt
        writes.append(irq)
        real_write(self, irq, text, filename)

    monkeypatch.setattr(KernelTree, "write_affinity", write_then_interrupt)
    code, out, err = run("apply", "--root", root, "--state-dir", state)
    assert code == 130 and out == ""
    assert err.startswith("irqagent: interrupted") and "irqagent restore" in err and len(err.splitlines()) == 1
    # cloud-hypervisor-320: its IO-APIC IRQs go from 0-319 to 0-255 (Cloud Hypervisor's IO-APIC is 8-bit)
    assert [read(root, f"proc/irq/{irq}/smp_affinity_list") for irq in writes] == ["0-255"] * 3
    monkeypatch.setattr(KernelTree, "write_affinity", real_write)
    assert run("restore", "--root", root, "--state-dir", state)[0] == 0
    assert all(read(root, f"proc/irq/{irq}/smp_affinity_list") == "0-319" for irq in writes)


def test_sigint_to_a_real_process_exits_130(tree):
    """SIGINT while the audit reads the tree (held there by a slow reader): exit 130, one line."""
    code = (
        "import sys, time\n"
        "from irqagent import runner\n"
        "def slow(tree, config):\n"
        "    print('reading', file=sys.stderr, flush=True)\n"
        "    time.sleep(60)\n"
        "runner.read_facts = slow\n"
        "from irqagent.cli import main\n"
        "sys.exit(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "audit", "--root", tree("qemu-kvm-256"), "--state-dir", "/nonexistent"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr.readline() == "reading\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert (out, err) == ("", "irqagent: interrupted\n")


def test_version_imports_neither_argparse_nor_the_program():
    """``--version`` is answered without importing the program (see benchmarks/startup.py)."""
    code = (
        "import sys\nfrom irqagent.cli import main\nmain(['--version'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('irqagent') or m == 'argparse'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "['irqagent', 'irqagent.cli', 'irqagent.errors']"


def test_audit_imports_no_executor_nor_other_formats(tree):
    code = (
        "import sys, io\nfrom irqagent.cli import main, Environment\n"
        f"main(['audit', '--root', {tree('qemu-kvm-256')!r}, '--state-dir', '/nonexistent'],"
        " Environment(io.StringIO(), io.StringIO(), {}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('irqagent')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    loaded = set(eval(result.stdout.splitlines()[-1]))
    for module in ("execute", "restore", "daemon", "render_prometheus", "snapshot", "notify", "output"):
        assert f"irqagent.{module}" not in loaded, module
    assert {"irqagent.runner", "irqagent.render_text", "irqagent.usage"} <= loaded


def test_audit_imports_none_of_the_costly_stdlib_modules(tree):
    """An audit of a guest without a config file loads neither dataclasses (and inspect), nor
    typing, tomllib or tempfile: together they were half of its start-up (benchmarks/startup.py).
    ``-S``: no site-packages, whose .pth hooks may import them on their own."""
    code = (
        "import sys, io\nfrom irqagent.cli import main, Environment\n"
        f"status = main(['audit', '--root', {tree('qemu-kvm-256')!r}, '--state-dir', '/nonexistent'],"
        " Environment(io.StringIO(), io.StringIO(), {'IRQAGENT_CONFIG': '/nonexistent/irqagent.toml'}))\n"
        "print(status, sorted({'dataclasses', 'inspect', 'typing', 'tomllib', 'tempfile'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


def test_startup_benchmark_prints_its_table(tree):
    """benchmarks/startup.py runs (one round, on a fixture) and prints the command that made it."""
    root = tree("live-kvm-2cpu")
    result = subprocess.run(
        [sys.executable, "benchmarks/startup.py", "--runs", "1", "--root", root],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a target missed on this (loaded) machine
    lines = result.stdout.splitlines()
    assert lines[0] == f"$ python3 benchmarks/startup.py --runs 1 --root {root}"
    rows = {line.split("  ")[0]: line.split() for line in lines[4:]}
    assert list(rows)[:3] == [
        "python3 -c pass",
        "irqagent --version",
        f"irqagent audit --root {root} --state-dir EMPTY",
    ]
    assert len(rows) == 5  # and the daemon's uevent socket, both ways
    assert rows["python3 -c pass"][-1] == "1.00"  # the ratios are to the bare interpreter
    assert rows["irqagent --version"][-2:] == ["<=", "2x"] or rows["irqagent --version"][-3:] == ["<=", "2x", "(!)"]
