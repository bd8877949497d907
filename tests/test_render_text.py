import io

from irqagent.cli import Environment
from irqagent.render_text import elide


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_elide_keeps_both_ends():
    assert elide("0-3,5,7,9,11,13,15,17,19,299", 12) == "0-3,5..9,299"
    assert len(elide("x" * 100, 21)) == 21
    assert elide("short", 10) == "short"


def test_colour_only_on_a_tty_without_no_color(tree):
    from irqagent.cli import main

    root = tree("apic-255")
    out = Tty()
    main(
        ["audit", "--root", root, "--state-dir", "/nonexistent"],
        Environment(stdout=out, stderr=io.StringIO(), environ={}),
    )
    assert "\x1b[33mwould-change\x1b[0m" in out.getvalue()
    out = Tty()
    main(
        ["audit", "--root", root, "--state-dir", "/nonexistent"],
        Environment(stdout=out, stderr=io.StringIO(), environ={"NO_COLOR": "1"}),
    )
    assert "\x1b[" not in out.getvalue()


def test_big_sparse_guest_fits_80_columns(tmp_path, cli):
    from irqagent.devtools.gentree import TreeSpec, guest_irqs, write_tree

    root = str(tmp_path / "sparse")
    # Every other CPU offline: long cpulists everywhere.
    offline = sum(1 << cpu for cpu in range(1, 300, 2))
    write_tree(
        TreeSpec(cpus=300, offline=offline, kernel="5.4.0", irqs=guest_irqs(300, 20, "5.4.0"), cpuinfo_style="minimal"),
        root,
    )
    for flags in ((), ("-v",)):
        result = cli("audit", "--root", root, *flags)
        assert result.code == 1
        assert max(len(line) for line in result.out.splitlines()) <= 80
