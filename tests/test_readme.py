"""README and CI agree: .ci/run and the install checks run exactly README's commands."""

import os
import re

from conftest import REPO


def text(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return handle.read()


def sh_blocks(section):
    """The ```sh blocks of the README section (## or ###) whose title starts with SECTION."""
    readme = text("README.md")
    match = re.search(rf"^#+ {re.escape(section)}[^\n]*\n(.*?)(?=^#+ )", readme, re.M | re.S)
    assert match, section
    return re.findall(r"^```sh\n(.*?)\n```$", match.group(1), re.M | re.S)


def ci_lines():
    return [line for line in text(".ci", "run").splitlines() if line.strip() and not line.startswith("#")]


def test_readme_first_command_installs_and_audits():
    assert sh_blocks("Install and run")[0] == "./install.sh && irqagent audit"


def test_ci_installs_as_readme_says():
    first = sh_blocks("Install and run")[0]
    assert any(line.startswith(f"{first} ") or line == first for line in ci_lines())
    # the fresh-machine and systemd checks run the same command
    for script in ("fresh-install.sh", "run-under-systemd.sh"):
        assert f"README_INSTALL='{first}'" in text("tools", script)


def test_ci_runs_the_readme_test_command_as_root_and_not():
    (command,) = sh_blocks("Tests")
    lines = ci_lines()
    assert command in lines  # as root
    assert any(line.startswith("runuser -u ") and f' && {command}"' in line for line in lines)  # as a non-root user


def test_ci_builds_the_package_as_readme_says():
    (command,) = sh_blocks("The Debian package")
    build, install = command.split(" && ")
    assert build in ci_lines()
    package = install.split("./")[1]
    assert any(line.endswith(f" . {package}") for line in ci_lines())  # installed by the two checks
