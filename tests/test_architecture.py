"""The layer contract of the ``ezpz`` package, read from the source with ``ast``.

Every import between ezpz modules counts: module level, inside functions and
under ``TYPE_CHECKING``.  Dependencies point one way (docs/architecture.md)::

    errors < extras, ranks, net < log < model < schedulers < plugins < launch
           < {submit, doctor, envs, smoke} < cli

and the runtime side (runtime/, data/, models/) imports only the bottom
(errors, extras, ranks, net, log).  The one upward edge allowed is the value's
delegation ``LaunchSpec.render()`` / ``.run()`` to the launch layer.

It also keeps modules under 400 lines and functions under 50 (or saying why).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ezpz"

#: Group -> rank on the launch side; a module may import groups of lower rank and its own group.
LAUNCH_SIDE = {
    "errors": 0,
    "extras": 1,
    "ranks": 1,
    "net": 1,
    "log": 2,
    "model": 3,
    "schedulers": 4,
    "plugins": 5,
    "launch": 6,
    "submit": 7,
    "doctor": 7,
    "envs": 7,
    "smoke": 7,
    "cli": 9,
    "__main__": 9,
    "ezpz": 9,
}
#: The entry points (the CLI, ``python -m ezpz``, the package's lazy names) may import each other.
TOP = 9
#: The runtime side: imports only groups of rank <= BOTTOM, and each other.
RUNTIME = {"runtime", "data", "models"}
BOTTOM = 2
#: Who may import the runtime side besides itself.
RUNTIME_USERS = {"doctor", "cli", "ezpz"}
#: The rank hook runs at the start of every Python rank (put on PYTHONPATH by the
#: shell shim ezpz/launch/rank.sh): it imports no ezpz module at all.
RANK_HOOK = "ezpz.launch._hook.sitecustomize"
#: (importer, imported) edges that point up, each with its reason.
ALLOWED_UPWARD = {
    ("ezpz.model.spec", "ezpz.launch.resolve"): "LaunchSpec.render() delegates to the launch layer (public API)",
    ("ezpz.model.spec", "ezpz.launch.execute"): "LaunchSpec.run() delegates to the launch layer (public API)",
}
#: Packages whose function-level imports are the rule, stated in their docstring (lazy command loading).
LAZY_BY_RULE = ("ezpz.cli",)


@dataclass(frozen=True)
class Edge:
    """One import of an ezpz module by another."""

    importer: str
    imported: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    """``ezpz/launch/resolve.py`` -> ``ezpz.launch.resolve``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def group(module: str) -> str:
    """The layer group of ``module``: its first name below ``ezpz`` (``ezpz`` itself for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ezpz"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The ezpz modules ``node`` imports (``from ezpz.x import y`` counts ``ezpz.x.y`` when it is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _resolve(module, node)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("ezpz") and name != module:
            yield name


def edges() -> list[Edge]:
    """Every import between ezpz modules."""
    found: list[Edge] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(sub) for fn in functions for sub in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [Edge(module, t, node.lineno, id(node) in inside) for t in _targets(module, node)]
    return found


EDGES = edges()


def violation(edge: Edge) -> str | None:
    """Why ``edge`` breaks the layer contract, or ``None``."""
    if (edge.importer, edge.imported) in ALLOWED_UPWARD:
        return None
    if edge.importer == RANK_HOOK:
        return "the rank hook imports nothing from ezpz"
    if edge.imported == RANK_HOOK:
        return "nothing imports the rank hook"
    src, dst = group(edge.importer), group(edge.imported)
    if src == dst:
        return None
    if src in RUNTIME:
        return None if dst in RUNTIME or LAUNCH_SIDE.get(dst, 99) <= BOTTOM else "runtime imports only the bottom"
    if dst in RUNTIME:
        return None if src in RUNTIME_USERS else f"{src} must not import the runtime side"
    if LAUNCH_SIDE[dst] < LAUNCH_SIDE[src] or LAUNCH_SIDE[dst] == LAUNCH_SIDE[src] == TOP:
        return None
    if LAUNCH_SIDE[dst] == LAUNCH_SIDE[src]:
        return f"{src} and {dst} are one layer and never import each other"
    return f"upward: {src} (layer {LAUNCH_SIDE[src]}) imports {dst} (layer {LAUNCH_SIDE[dst]})"


def test_the_contract_sees_the_package() -> None:
    assert {"ezpz.model.spec", "ezpz.launch.resolve", "ezpz.runtime.dist", RANK_HOOK} <= set(MODULES)
    assert {group(m) for m in MODULES} <= set(LAUNCH_SIDE) | RUNTIME
    assert len(EDGES) > 100


def test_dependencies_point_one_way() -> None:
    bad = [f"{e.importer}:{e.line} -> {e.imported}: {why}" for e in EDGES if (why := violation(e))]
    assert not bad, "\n".join(bad)


def test_no_import_cycle() -> None:
    """A cycle among modules (the allowed delegation aside), counting every import."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        if (e.importer, e.imported) not in ALLOWED_UPWARD:
            graph[e.importer].add(e.imported)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_function_level_imports_say_why() -> None:
    """An import inside a function keeps something heavy off the launch path; a comment says what."""
    missing = []
    for module, path in MODULES.items():
        if module.startswith(LAZY_BY_RULE):
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                above = lines[node.lineno - 2].strip()
                here = lines[node.lineno - 1]
                previous_is_import = above.startswith(("import ", "from "))
                if not (above.startswith("#") or "#" in here or previous_is_import):
                    missing.append(f"{module}:{node.lineno}: {here.strip()}")
    assert not missing, "function-level imports without a reason:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("importer", "imported", "reason"),
    [
        ("ezpz.model.spec", "ezpz.schedulers.base", "upward"),
        ("ezpz.runtime.dist", "ezpz.launch.resolve", "runtime imports only the bottom"),
        ("ezpz.doctor.checks", "ezpz.envs.yeet", "one layer"),
        ("ezpz.launch.resolve", "ezpz.runtime.history", "must not import the runtime side"),
        (RANK_HOOK, "ezpz.errors", "rank hook"),
        ("ezpz.launch.supervise", RANK_HOOK, "rank hook"),
    ],
)
def test_the_contract_catches_a_back_edge(importer: str, imported: str, reason: str) -> None:
    why = violation(Edge(importer, imported, 1, in_function=True))
    assert why is not None and reason in why


#: Longest module, in lines.
MODULE_LINES = 400
#: Longest function, in lines from ``def`` to its last line, docstring included.
FUNCTION_LINES = 50
#: The words a longer function's docstring uses to say why it stays one piece.
ONE_PIECE = "one function on purpose"


def _functions(
    module: str, body: list[ast.stmt], prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method in ``body`` (nested ones too), named ``module.Class.name``."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{module}.{prefix}{node.name}"
            yield name, node
            yield from _functions(module, node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(module, node.body, f"{prefix}{node.name}.")


def too_long(module: str, text: str) -> dict[str, str]:
    """What in ``text`` (module ``module``) is over the limits without saying why, with its size."""
    found: dict[str, str] = {}
    if (lines := len(text.splitlines())) > MODULE_LINES:
        found[module] = f"{lines} lines"
    for name, fn in _functions(module, ast.parse(text).body):
        length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
        if length > FUNCTION_LINES and ONE_PIECE not in (ast.get_docstring(fn) or "").lower():
            found[name] = f"{length} lines"
    return found


TOO_LONG = {name: size for module, path in MODULES.items() for name, size in too_long(module, path.read_text()).items()}


def test_modules_and_functions_stay_short() -> None:
    """No module over 400 lines; no function over 50 unless its docstring says "One function on purpose" and why."""
    bad = [f"{name}: {size}" for name, size in sorted(TOO_LONG.items())]
    assert not bad, "too long (split it, or say why it is one function on purpose):\n" + "\n".join(bad)


def test_the_size_check_counts_docstrings_methods_and_reasons() -> None:
    def source(doc: str, body_lines: int) -> str:
        body = "\n".join(f"        x{i} = {i}" for i in range(body_lines))
        return f'class C:\n    def f(self):\n        """{doc}"""\n{body}\n'

    assert too_long("m", source("Short.", FUNCTION_LINES - 2)) == {}
    assert too_long("m", source("Short.", FUNCTION_LINES - 1)) == {"m.C.f": f"{FUNCTION_LINES + 1} lines"}
    assert too_long("m", source("One function on purpose: it reads as one rule.", FUNCTION_LINES)) == {}
    assert too_long("m", "\n" * MODULE_LINES + "x = 1\n") == {"m": f"{MODULE_LINES + 1} lines"}
