"""install.sh's own interface (the install itself runs in tools/fresh-install.sh and
tools/run-under-systemd.sh, on fresh Debian rootfs, from .ci/run)."""

import os
import subprocess

import pytest

from conftest import IS_ROOT, REPO

SCRIPT = os.path.join(REPO, "install.sh")


def run(*args):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_help_describes_the_layout():
    result = run("--help")
    assert result.returncode == 0 and result.stderr == ""
    for path in ("/opt/irqagent/", "/usr/local/sbin/irqagent", "/usr/local/lib/systemd/system/", "/var/lib/irqagent/"):
        assert path in result.stdout
    assert "--uninstall" in result.stdout and not result.stdout.startswith("#")


def test_unknown_option_is_one_line_and_exit_2_before_anything_is_done():
    result = run("--prefix=/tmp/x")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("install.sh: error: unknown option '--prefix=/tmp/x'")
    assert result.stderr.count("\n") == 1


@pytest.mark.skipif(IS_ROOT, reason="needs a non-root user")
def test_non_root_is_refused_in_one_line():
    result = run()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("install.sh: error: run as root") and result.stderr.count("\n") == 1
