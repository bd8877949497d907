"""The generated fixture trees in tests/fixtures are exactly what the profiles generate."""

import filecmp
import os
import sys

import pytest

from irqagent.devtools.profiles import PROFILES

from conftest import FIXTURES

sys.path.insert(0, FIXTURES)
from regenerate import generate  # noqa: E402


def files(root):
    found = set()
    for directory, _, names in os.walk(root):
        for name in names:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_committed_fixture_is_current(tmp_path, name):
    fresh = str(tmp_path / name)
    generate(name, fresh)
    committed = os.path.join(FIXTURES, name)
    assert files(fresh) == files(committed), "run: python tests/fixtures/regenerate.py"
    for rel in sorted(files(fresh)):
        a, b = os.path.join(fresh, rel), os.path.join(committed, rel)
        if os.path.islink(a):
            assert os.readlink(a) == os.readlink(b)
        else:
            assert filecmp.cmp(a, b, shallow=False), rel
