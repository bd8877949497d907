"""README and CI agree: .ci/run runs exactly the README's test command."""

import os

from conftest import REPO


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    with open(os.path.join(REPO, ".ci", "run")) as handle:
        last = [line for line in handle.read().splitlines() if line.strip() and not line.startswith("#")][-1]
    assert f"```sh\n{last}\n```" in readme


def test_readme_install_command_runs_an_audit():
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    assert "```sh\npython3 -m pip install . && irqagent audit\n```" in readme
