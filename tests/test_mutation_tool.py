"""tools/mutation.py: its mutants, their ids, and the equivalent list it reads (docs/mutation-testing.md)."""

import importlib.util
import os

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("mutation_tool", os.path.join(REPO, "tools", "mutation.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAMPLE = '''
"""A docstring is not mutated."""
TYPE_CHECKING = False  # typing's flag without importing typing: not mutated

if TYPE_CHECKING:
    LIMIT_FOR_MYPY = 3
LIMIT = 1 << 15
__all__ = ["f"]


def f(x: int = 2) -> int:
    if x >= LIMIT and not x & 4:
        raise ValueError("the message is not mutated")
    g(x)
    return x - 1


def g(y):
    return f"{y + 1} text"
'''


def test_mutants_of_a_small_module_and_their_ids(tool):
    mutants = {m.ident: tool.mutate(SAMPLE, m)[1] for m in tool.find_mutants("sample", SAMPLE)}
    assert mutants == {
        "sample:LIMIT:LShift>RShift#1": "1 >> 15",
        "sample:LIMIT:Int+1#1": "2",
        "sample:LIMIT:Int+1#2": "16",
        "sample:@f:Int+1#1": "3",  # f's default: the def line's scope
        "sample:f:And>Or#1": "x >= LIMIT or not x & 4",
        "sample:f:GtE>Gt#1": "x > LIMIT",
        "sample:f:Not>#1": "x & 4",
        "sample:f:BitAnd>BitOr#1": "x | 4",
        "sample:f:Int+1#1": "5",
        "sample:f:Raise>Pass#1": "pass",
        "sample:f:Call>Pass#1": "pass",
        "sample:f:Return>None#1": "return None",
        "sample:f:Sub>Add#1": "x + 1",
        "sample:f:Int+1#2": "2",
        "sample:g:Return>None#1": "return None",
        "sample:g:Add>Sub#1": "y - 1",
        "sample:g:Int+1#1": "2",
    }


def test_mutants_of_every_module_compile_and_change_the_code(tool):
    """Every tenth mutant (all of them take 10 s; the tool compiles each one before running it)."""
    import ast

    config = tool.load_config()
    for module in config["modules"]:
        with open(os.path.join(REPO, "irqagent", f"{module}.py")) as handle:
            source = handle.read()
        original = ast.unparse(ast.parse(source))
        for mutant in tool.find_mutants(module, source)[::10]:
            mutated, _ = tool.mutate(source, mutant)
            compile(mutated, module, "exec")
            assert mutated.strip() != original.strip(), mutant.ident


def test_every_equivalent_mutant_listed_exists_and_has_a_reason(tool):
    config = tool.load_config()
    ids = set()
    for module in config["modules"]:
        with open(os.path.join(REPO, "irqagent", f"{module}.py")) as handle:
            ids.update(m.ident for m in tool.find_mutants(module, handle.read()))
    for ident, reason in config["equivalent"].items():
        assert ident in ids, f"{ident} is listed as equivalent but is no mutant (the code changed: re-check it)"
        assert len(reason) > 10, ident
