"""``python3 -m nox`` installs torch once: the sessions that need it share one environment.

Read from noxfile.py with ``ast`` (nox itself is not a test dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

NOXFILE = Path(__file__).resolve().parents[1] / "noxfile.py"


def _sessions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if ast.unparse(target) == "nox.session":
                    found[node.name] = node
    return found


def _calls(node: ast.AST) -> list[str]:
    return [ast.unparse(call.func) for call in ast.walk(node) if isinstance(call, ast.Call)]


def test_torch_is_installed_in_one_place_only():
    tree = ast.parse(NOXFILE.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    installers = [
        name
        for name, node in functions.items()
        if any(isinstance(n, ast.Name) and n.id == "TORCH" for n in ast.walk(node))
    ]
    assert installers == ["_shared"], installers
    assert "session.install" not in _calls(functions["_shared"])


def test_sessions_that_need_torch_use_the_shared_environment_and_no_venv_of_their_own():
    tree = ast.parse(NOXFILE.read_text())
    sessions = _sessions(tree)
    sharing = {name for name, node in sessions.items() if "_shared" in _calls(node)}
    assert {"tests", "typecheck", "bench"} <= sharing
    for name in sharing:
        (deco,) = sessions[name].decorator_list
        assert isinstance(deco, ast.Call), name
        backend = {kw.arg: ast.literal_eval(kw.value) for kw in deco.keywords}.get("venv_backend")
        assert backend == "none", f"{name} would build its own virtualenv besides the shared one"
        assert "session.install" not in _calls(sessions[name]), name
