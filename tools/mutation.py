#!/usr/bin/env python3
"""Mutation testing of irqagent's pure core: one mutant at a time, each against its module's tests.

    nice python3 tools/mutation.py                      # every module in tools/mutation.toml
    nice python3 tools/mutation.py --module cpuid       # one module (repeatable)
    nice python3 tools/mutation.py --sample 40 --seed 1 # 40 mutants per module, chosen by the seed
    python3 tools/mutation.py --module cpuid --list     # the mutants, with their ids, without running
    python3 tools/mutation.py --show 'cpuid:decode:BitAnd>BitOr#2'   # one mutant's line, mutated

A mutant is the module with ONE change, made on its syntax tree: an arithmetic, bitwise or
shift operator swapped (``&`` -> ``|``, ``<<`` -> ``>>``, ``+`` -> ``-``...), a comparison
moved across its boundary (``<`` -> ``<=``, ``==`` -> ``!=``, ``in`` -> ``not in``...),
``and``/``or`` swapped, a ``not`` or unary minus dropped, an int constant plus one, a bool
flipped, a string or bytes constant changed, ``return X`` -> ``return None``, ``break`` /
``continue`` swapped, ``min``/``max`` swapped, a ``raise`` statement or a call statement
(``os.close(fd)``, ``notes.append(...)``) replaced by ``pass``.  Module-level constants are mutated too (the
CPUID leaf numbers, the APIC ID limits).  Not mutated: docstrings, annotations, ``__all__``,
``TYPE_CHECKING = False`` and ``if TYPE_CHECKING:`` blocks, the text of f-strings and of raised exceptions' messages.

A mutant's id is ``module:scope:operator#n`` -- scope is the function's qualified name, the
class name, the module-level name assigned, or ``@name`` for the decorators and default
values of a def or class line; n counts that operator in that scope -- so
ids stay the same when other functions change.  The mutant is written into a private copy
of the repository (one per worker), and ``pytest -x`` runs the module's tests
(``tests/test_<module>.py`` plus the extra files tools/mutation.toml declares) in a process
forked from one that has already imported pytest and hypothesis.  Any failure, error or
timeout (5x the unmutated run, at least 10 s) or running out of its 2 GiB address space
kills the mutant.  Mutants listed as
equivalent in tools/mutation.toml (id and reason) are left out of the score.

The table gives each module's score, killed / (mutants - equivalent); the exit status is 1
when a measured module scores below --min (95 %), 2 on a usage or set-up error.
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

MEMORY_LIMIT = 2 << 30  # address space of one mutant's run (the largest test file needs under 0.5 GB)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "tools", "mutation.toml")
IGNORED_IN_COPY = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", "build", "dist", "*.egg-info", ".benchmarks"
)

BINOPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
}
CMPOPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BOOLOPS = {ast.And: ast.Or, ast.Or: ast.And}
UNARY_DROPPED = (ast.Not, ast.USub, ast.Invert)
SWAPPED_CALLS = {"min": "max", "max": "min"}


class Mutant:
    def __init__(self, module: str, scope: str, operator: str, line: int, path: tuple) -> None:
        self.module = module
        self.scope = scope
        self.operator = operator
        self.line = line
        self.path = path  # how to find the node again: a tuple of (field, index) steps from the root
        self.ident = ""


# Nodes that are parts of a statement, not statements (ast.match_case exists from Python 3.10 on)
_CLAUSES = (ast.comprehension, ast.keyword, ast.withitem, ast.arguments) + tuple(
    getattr(ast, name) for name in ("match_case",) if hasattr(ast, name)
)


def _name(node: ast.AST) -> str:
    return type(node).__name__


class Finder:
    """Walks a module's tree and lists the mutants, with the path to each mutated node."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.mutants: list[Mutant] = []
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, scope: str, operator: str, node: ast.AST, path: tuple) -> None:
        mutant = Mutant(self.module, scope, operator, getattr(node, "lineno", 0), path)
        key = (scope, operator)
        self.counts[key] = self.counts.get(key, 0) + 1
        mutant.ident = f"{self.module}:{scope}:{operator}#{self.counts[key]}"
        self.mutants.append(mutant)

    def module_body(self, tree: ast.Module) -> None:
        for index, stmt in enumerate(tree.body):
            self.statement(stmt, "<module>", (("body", index),), top=True)

    def statement(self, stmt: ast.AST, scope: str, path: tuple, top: bool = False) -> None:
        if _is_type_checking(stmt):
            return
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            return
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            return  # a docstring
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = stmt.name if scope == "<module>" else f"{scope}.{stmt.name}"
            for index, decorator in enumerate(stmt.decorator_list):  # "@name": the def line's own scope
                self.expr(decorator, f"@{inner}", path + (("decorator_list", index),))
            if not isinstance(stmt, ast.ClassDef):
                self.arguments(stmt.args, f"@{inner}", path + (("args", None),))
            for index, child in enumerate(stmt.body):
                self.statement(child, inner, path + (("body", index),))
            return
        if top and isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if names in (["__all__"], ["TYPE_CHECKING"]):
                return  # __all__; ``TYPE_CHECKING = False`` (typing's flag without importing typing)
            if names:
                scope = ",".join(names)
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            if not (isinstance(stmt.value, ast.Constant) and stmt.value.value is None):
                self.add(scope, "Return>None", stmt, path)
        if isinstance(stmt, ast.Raise):
            self.add(scope, "Raise>Pass", stmt, path)
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            self.add(scope, "Call>Pass", stmt, path)
        if isinstance(stmt, ast.Break):
            self.add(scope, "Break>Continue", stmt, path)
        if isinstance(stmt, ast.Continue):
            self.add(scope, "Continue>Break", stmt, path)
        if isinstance(stmt, ast.AugAssign) and type(stmt.op) in BINOPS:
            self.add(scope, f"{_name(stmt.op)}>{BINOPS[type(stmt.op)].__name__}=", stmt, path)
        self.children(stmt, scope, path, isinstance(stmt, ast.Raise), skip=("annotation", "returns", "type_comment"))

    def child(self, node: ast.AST, scope: str, path: tuple, raising: bool) -> None:
        if isinstance(node, ast.stmt):
            self.statement(node, scope, path)
        elif isinstance(node, ast.expr):
            self.expr(node, scope, path, raising)
        elif isinstance(node, (ast.excepthandler, *_CLAUSES)):
            self.children(node, scope, path, raising)

    def children(self, node: ast.AST, scope: str, path: tuple, raising: bool, skip: tuple = ()) -> None:
        """Visit every child node of ``node`` (but those of the fields in ``skip``)."""
        for field, value in ast.iter_fields(node):
            if field in skip:
                continue
            if isinstance(value, list):
                for index, item in enumerate(value):
                    self.child(item, scope, path + ((field, index),), raising)
            elif isinstance(value, ast.AST):
                self.child(value, scope, path + ((field, None),), raising)

    def arguments(self, args: ast.arguments, scope: str, path: tuple) -> None:
        for index, default in enumerate(args.defaults):
            self.expr(default, scope, path + (("defaults", index),))
        for index, default in enumerate(args.kw_defaults):
            if default is not None:
                self.expr(default, scope, path + (("kw_defaults", index),))

    def expr(self, node: ast.AST, scope: str, path: tuple, raising: bool = False) -> None:
        if isinstance(node, ast.JoinedStr):
            for index, value in enumerate(node.values):
                if isinstance(value, ast.FormattedValue):
                    self.expr(value.value, scope, path + (("values", index), ("value", None)), raising)
            return
        if isinstance(node, ast.Lambda):
            self.expr(node.body, scope, path + (("body", None),), raising)
            return
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            self.add(scope, f"{_name(node.op)}>{BINOPS[type(node.op)].__name__}", node, path)
        elif isinstance(node, ast.Compare):
            for index, op in enumerate(node.ops):
                self.add(scope, f"{_name(op)}>{CMPOPS[type(op)].__name__}", node, path + (("ops", index),))
        elif isinstance(node, ast.BoolOp):
            self.add(scope, f"{_name(node.op)}>{BOOLOPS[type(node.op)].__name__}", node, path)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, UNARY_DROPPED):
            self.add(scope, f"{_name(node.op)}>", node, path)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SWAPPED_CALLS:
            self.add(scope, f"{node.func.id}>{SWAPPED_CALLS[node.func.id]}", node, path)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                self.add(scope, f"{value}>{not value}", node, path)
            elif isinstance(value, int):
                self.add(scope, "Int+1", node, path)
            elif isinstance(value, (str, bytes)) and not raising:
                self.add(scope, "Str" if isinstance(value, str) else "Bytes", node, path)
            return
        self.children(node, scope, path, raising, skip=("ctx",))


def _is_type_checking(stmt: ast.AST) -> bool:
    if not isinstance(stmt, ast.If):
        return False
    test = stmt.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def find_mutants(module: str, source: str) -> list[Mutant]:
    finder = Finder(module)
    finder.module_body(ast.parse(source))
    return finder.mutants


def _locate(tree: ast.AST, path: tuple) -> tuple[ast.AST, str | None, int | None]:
    """The node at ``path``, or its parent and the last step when the step ends on a list of ops."""
    node = tree
    for field, index in path[:-1]:
        value = getattr(node, field)
        node = value[index] if index is not None else value
    field, index = path[-1]
    return node, field, index


def mutate(source: str, mutant: Mutant) -> tuple[str, str]:
    """The mutated module's source, and the mutated expression or statement (for the report)."""
    tree = ast.parse(source)
    parent, field, index = _locate(tree, mutant.path)
    if field == "ops":  # a comparison: parent is the Compare node
        parent.ops[index] = CMPOPS[type(parent.ops[index])]()
        shown = parent
    else:
        value = getattr(parent, field)
        node = value[index] if index is not None else value
        new = _mutated_node(node, mutant.operator)
        if index is not None:
            value[index] = new
        else:
            setattr(parent, field, new)
        shown = new
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n", ast.unparse(shown).splitlines()[0]


def _mutated_node(node: ast.AST, operator: str) -> ast.AST:
    node = copy.deepcopy(node)
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = BINOPS[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = BOOLOPS[type(node.op)]()
    elif isinstance(node, ast.UnaryOp):
        return node.operand
    elif isinstance(node, ast.Call):
        node.func = ast.Name(SWAPPED_CALLS[node.func.id], ast.Load())
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            node.value = not value
        elif isinstance(value, int):
            node.value = value + 1
        elif isinstance(value, str):
            node.value = "XX" + value + "XX"
        else:
            node.value = b"XX" + value + b"XX"
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(None)
    elif isinstance(node, (ast.Raise, ast.Expr)):
        return ast.Pass()
    elif isinstance(node, ast.Break):
        return ast.Continue()
    elif isinstance(node, ast.Continue):
        return ast.Break()
    else:
        raise AssertionError(f"no mutation for {operator} on {_name(node)}")
    return node


def load_config() -> dict:
    with open(CONFIG, "rb") as handle:
        return tomllib.load(handle)


def module_tests(config: dict, module: str) -> list[str]:
    entry = config.get("modules", {}).get(module, {})
    deselected = [arg for test in entry.get("deselect", []) for arg in ("--deselect", test)]
    return [f"tests/test_{module}.py"] + list(entry.get("extra_tests", [])) + deselected


def run_child(slot: str, module: str, source: str | None, tests: list[str], timeout: float) -> int:
    """Fork a child that writes ``source`` (if any) as the module in ``slot`` and runs ``tests``."""
    pid = os.fork()
    if pid:
        return pid
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)  # SIGALRM's default action ends the child: a timeout
        # a mutant that loops while it allocates (a heap that never empties) fails with MemoryError at
        # this size instead of taking the machine's memory before its timeout (3.6 GB seen in 10 s)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if source is not None:
            target = os.path.join(slot, "irqagent", f"{module}.py")
            with open(target, "w") as handle:
                handle.write(source)
            stamp = time.time_ns()
            os.utime(target, ns=(stamp, stamp))  # a fresh mtime: never a stale .pyc of another mutant
        os.chdir(slot)
        sys.path.insert(0, slot)
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        import hypothesis
        import pytest

        hypothesis.settings.register_profile("mutation", database=None, derandomize=True, deadline=None)
        hypothesis.settings.load_profile("mutation")
        code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:benchmark", *tests])
        os._exit(int(code))
    except BaseException:  # noqa: B036 - the child must never return into the parent's loop
        os._exit(70)


def wait_any(running: dict[int, object]) -> tuple[object, str]:
    pid, status = os.wait()
    item = running.pop(pid)
    if os.WIFSIGNALED(status):
        return item, "timeout" if os.WTERMSIG(status) == signal.SIGALRM else "killed"
    code = os.WEXITSTATUS(status)
    if code == 0:
        return item, "survived"
    if code in (1, 2):
        return item, "killed"  # a failing test, or an error while collecting (the mutant broke an import)
    return item, f"error{code}"


def measure(module, mutants, tests, slots, jobs, source, verbose) -> tuple[dict[str, str], float]:
    """Run every mutant; the result per mutant id."""
    for slot in slots:
        _restore(slot, module, source)
    started = time.monotonic()
    # the baseline runs the module as the mutants are written (ast.unparse: no comments), so that a
    # difference made by unparsing shows here and not as killed mutants
    pid = run_child(slots[0], module, ast.unparse(ast.parse(source)) + "\n", tests, 600)
    _, outcome = wait_any({pid: None})
    baseline = time.monotonic() - started
    if outcome != "survived":
        raise SystemExit(f"mutation: {module}: the unmutated tests fail ({outcome}): {' '.join(tests)}")
    timeout = max(10.0, 5 * baseline)
    results: dict[str, str] = {}
    queue = list(mutants)
    free = list(slots[:jobs])
    running: dict[int, object] = {}
    while queue or running:
        while queue and free:
            mutant = queue.pop(0)
            slot = free.pop()
            mutated, _ = mutate(source, mutant)
            compile(mutated, f"irqagent/{module}.py", "exec")  # a SyntaxError here is a bug of this tool
            running[run_child(slot, module, mutated, tests, timeout)] = (mutant, slot)
        (mutant, slot), outcome = wait_any(running)
        free.append(slot)
        results[mutant.ident] = outcome
        if verbose:
            print(f"  {outcome:8} {mutant.ident}", flush=True)
    for slot in slots:
        _restore(slot, module, source)
    return results, baseline


def _restore(slot: str, module: str, source: str) -> None:
    target = os.path.join(slot, "irqagent", f"{module}.py")
    with open(target, "w") as handle:
        handle.write(source)
    stamp = time.time_ns()
    os.utime(target, ns=(stamp, stamp))


def main(argv: list[str] | None = None) -> int:
    config = load_config()
    parser = argparse.ArgumentParser(
        prog="tools/mutation.py",
        description="Mutation score of irqagent's pure core, per module (see docs/mutation-testing.md).",
    )
    parser.add_argument("--module", action="append", metavar="M", help="a module to measure (repeatable; default: all)")
    parser.add_argument("--sample", type=int, metavar="N", help="measure N mutants per module, chosen by --seed")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the sample's seed (default 0)")
    parser.add_argument("--jobs", type=int, default=2, metavar="J", help="mutants run at once (default 2)")
    parser.add_argument("--min", type=float, default=95.0, metavar="PCT", help="lowest passing score (default 95)")
    parser.add_argument(
        "--match", action="append", metavar="GLOB", help="only mutants whose id matches (fnmatch; repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants (id, line, mutated code), run nothing")
    parser.add_argument("--show", metavar="ID", help="show one mutant's line and its mutated form")
    parser.add_argument("--verbose", "-v", action="store_true", help="print each mutant's outcome as it comes")
    args = parser.parse_args(argv)
    known = list(config["modules"])
    modules = args.module or known
    unknown = [m for m in modules if m not in known]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r} (tools/mutation.toml lists: {', '.join(known)})")
    equivalent: dict[str, str] = config.get("equivalent", {})

    if args.show:
        module = args.show.split(":", 1)[0]
        if module not in known:
            parser.error(f"no module in mutant id {args.show!r}")
        source = _read(module)
        for mutant in find_mutants(module, source):
            if mutant.ident == args.show:
                _, shown = mutate(source, mutant)
                print(f"irqagent/{module}.py:{mutant.line}: {source.splitlines()[mutant.line - 1].strip()}")
                print(f"  mutated: {shown}")
                return 0
        parser.error(f"no mutant {args.show!r}")

    if args.list:
        for module in modules:
            source = _read(module)
            for mutant in find_mutants(module, source):
                mark = "  (equivalent)" if mutant.ident in equivalent else ""
                print(f"{mutant.ident}\tline {mutant.line}: {mutate(source, mutant)[1]}{mark}")
        return 0

    os.nice(10)
    import hypothesis  # noqa: F401 - imported once here, so that each forked run starts without it
    import pytest  # noqa: F401

    workdir = tempfile.mkdtemp(prefix="irqagent-mutation.")
    try:
        slots = []
        for index in range(max(1, args.jobs)):
            slot = os.path.join(workdir, f"w{index}")
            shutil.copytree(REPO, slot, symlinks=True, ignore=IGNORED_IN_COPY)
            slots.append(slot)
        rows = []
        failing = []
        stale = []
        for module in modules:
            source = _read(module)
            mutants = find_mutants(module, source)
            ids = {m.ident for m in mutants}
            stale += sorted(i for i in equivalent if i.startswith(module + ":") and i not in ids)
            counted = [m for m in mutants if m.ident not in equivalent]
            if args.match:
                counted = [m for m in counted if any(fnmatch.fnmatchcase(m.ident, glob) for glob in args.match)]
            if args.sample is not None and args.sample < len(counted):
                counted = random.Random(f"{args.seed}:{module}").sample(counted, args.sample)
                counted.sort(key=lambda m: m.line)
            started = time.monotonic()
            results, _ = measure(module, counted, module_tests(config, module), slots, args.jobs, source, args.verbose)
            took = time.monotonic() - started
            killed = sum(1 for r in results.values() if r in ("killed", "timeout"))
            score = 100.0 * killed / len(results) if results else 100.0
            rows.append((module, len(mutants), len(ids & set(equivalent)), len(results), killed, score, took))
            for mutant in counted:
                if results[mutant.ident] == "survived":
                    print(f"survived: {mutant.ident}  irqagent/{module}.py:{mutant.line}: {mutate(source, mutant)[1]}")
            other = sorted({r for r in results.values() if r.startswith("error")})
            if other:
                print(f"{module}: runs that ended oddly ({', '.join(other)}: pytest or the tool failed): not killed")
            print(f"{module}: {killed} of {len(results)} mutants killed ({score:.1f} %) in {took:.0f} s")
            if score < args.min:
                failing.append(module)
            sys.stdout.flush()
        _table(rows, args)
        for ident in stale:
            print(f"mutation: tools/mutation.toml lists {ident!r} as equivalent, but there is no such mutant")
        return 1 if failing else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read(module: str) -> str:
    with open(os.path.join(REPO, "irqagent", f"{module}.py")) as handle:
        return handle.read()


def _table(rows, args) -> None:
    print()
    sampled = f" (a sample of {args.sample} per module, seed {args.seed})" if args.sample else ""
    print(f"mutation score{sampled}, pass mark {args.min:g} %")
    print(f"{'module':12} {'mutants':>8} {'equiv.':>7} {'run':>5} {'killed':>7} {'score':>7} {'time':>7}")
    for module, total, equiv, run, killed, score, took in rows:
        print(f"{module:12} {total:>8} {equiv:>7} {run:>5} {killed:>7} {score:>6.1f}% {took:>6.0f}s")


if __name__ == "__main__":
    sys.exit(main())
