"""Golden argv: site cases rendered through the real resolution path, compared token by token.

Each ``tests/golden/cases/NAME.toml`` describes one launch:

* ``description``: what the case shows (and which ``sites.md`` row it is);
* ``hostname``: the fake machine's hostname (site templates are
  chosen by hostname);
* ``probe``: accelerators the node probe reports.  Mocked: this machine has
  no GPUs, so every case states the count it assumes (default 0);
* ``args``: ``ezpz launch`` arguments, parsed by the real Typer command
  (``--dry-run --json`` is added), or ``[spec]``: LaunchSpec fields given
  as the ``flags`` layer of :func:`ezpz.launch.resolve.plan_launch`;
* ``[environ]``: the environment the launch sees (nothing else leaks in;
  ``{tmp}`` is the test's tmp_path);
* ``[write]`` / ``[generate.NAME]``: files written under tmp_path first
  (``generate`` writes ``count`` lines of ``format.format(i)``);
* ``cpus``: cores per host the machine probe reports (mocked; default 64);
* ``error = true``: the launch is bad input; the golden holds the one
  ``error:`` line and exit status 2 instead of a plan.

``tests/golden/expected/NAME.json`` holds the rendered plan with ``{tmp}`` for
tmp_path, ``{shim}`` for the per-rank shim ``ezpz/launch/rank.sh`` and ``{python}``
for ``sys.executable``.  A missing expectation fails; rewrite them with
``pytest tests/test_golden.py --regen-golden`` (nothing else: a run with
``EZPZ_REGEN_GOLDEN`` set is refused, see tests/conftest.py) and review the diff.  PBS itself is mocked through its environment (there is no
PBS server for this machine); Slurm likewise here (real Slurm runs live in
``test_slurm_real.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import tomllib
from typer.testing import CliRunner

import ezpz.launch.resolve
from ezpz.cli import app, main
from ezpz.launch.machine import Machine
from ezpz.launch.supervise import RANK_SHIM
from ezpz.launch.templates import template_files
from ezpz.model.plan import Plan

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted((GOLDEN / "cases").glob("*.toml"))
#: Hosts and file lines beyond this are recorded as count + first + last.
LONG = 16
#: Fixed so the rendering is deterministic (otherwise a free port is chosen).
MASTER_PORT = "29500"
#: The per-rank shell shim inside the installed package.
SHIM = str(RANK_SHIM)


def _regen(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--regen-golden"))


def _summary(items: list[str]) -> list[str] | dict[str, Any]:
    if len(items) <= LONG:
        return items
    return {"count": len(items), "first": items[0], "last": items[-1]}


def _normalise(value: Any, tmp: str) -> Any:
    if isinstance(value, str):
        return value.replace(tmp, "{tmp}").replace(SHIM, "{shim}").replace(sys.executable, "{python}")
    if isinstance(value, list):
        return [_normalise(v, tmp) for v in value]
    if isinstance(value, dict):
        return {_normalise(k, tmp): _normalise(v, tmp) for k, v in value.items()}
    return value


def record(plan: Plan, tmp: Path) -> dict[str, Any]:
    """The comparable part of a plan, with machine-specific paths replaced."""
    data = {
        "argv": list(plan.argv),
        "env": dict(plan.env),
        "np": plan.np,
        "ppn": plan.ppn,
        "nhosts": plan.nhosts,
        "hosts": _summary(list(plan.hosts)),
        "scheduler": plan.scheduler,
        "launcher": plan.launcher,
        "template": plan.template,
        "files": {path: _summary(content.splitlines()) for path, content in plan.files},
        "timeout": plan.timeout,
        "retries": plan.retries,
        "provenance": dict(plan.provenance),
        "accelerators_per_node": plan.spec["accelerators_per_node"],
    }
    if plan.left_out:
        data["left_out"] = dict(plan.left_out)
    # The rest only where a case sets it (most keep the defaults).
    defaults = Plan(argv=(), env={}, np=1, ppn=1, nhosts=1, hosts=(), scheduler="", launcher="")
    for name in ("spares", "supervise", "tag", "console_ranks", "run_dir", "stop_grace"):
        if getattr(plan, name) != getattr(defaults, name):
            data[name] = list(value) if isinstance(value := getattr(plan, name), tuple) else value
    return _normalise(data, str(tmp))


def _render_cli(
    args: list[str], environ: Mapping[str, str], monkeypatch: pytest.MonkeyPatch, error: bool = False
) -> Plan | dict[str, Any]:
    """Run ``ezpz launch --dry-run --json ARGS`` for real, seeing only ``environ``.

    With ``error``, the launch must fail as bad input: return its exit status and ``error:`` line.
    """
    real = ezpz.launch.resolve.plan_launch
    seen: list[Plan] = []

    def plan_in_case_environ(spec: Any, _environ: Mapping[str, str] | None = None) -> Plan:
        plan = real(spec, environ)
        seen.append(plan)
        return plan

    monkeypatch.setattr(ezpz.launch.resolve, "plan_launch", plan_in_case_environ)
    if error:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["launch", "--dry-run", "--json", *args])
        assert out.getvalue() == "", "bad input must print no plan"
        return {"exit_code": code, "stderr": err.getvalue().splitlines()}
    result = CliRunner().invoke(app, ["launch", "--dry-run", "--json", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    assert json.loads(result.stdout) == seen[0].to_dict()
    return seen[0]


def render_case(
    case: Mapping[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch, fake_machine: Callable[..., Machine]
) -> Plan | dict[str, Any]:
    """Set up the case's files, hostname and probe, and render it."""
    for name, text in case.get("write", {}).items():
        (tmp / name).write_text(text)
    for name, gen in case.get("generate", {}).items():
        (tmp / name).write_text("".join(gen["format"].format(i) + "\n" for i in range(gen["count"])))
    environ = {"EZPZ_MASTER_PORT": MASTER_PORT}
    environ.update({k: v.replace("{tmp}", str(tmp)) for k, v in case.get("environ", {}).items()})
    run_dir = tmp / "run"
    run_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(run_dir))
    fake_machine(
        hostname=case.get("hostname", "testhost"),
        accelerators=int(case.get("probe", 0)),
        how="mocked probe (no accelerators here)",
        cores=int(case.get("cpus", 64)),
    )
    if "args" in case:
        args = [a.replace("{tmp}", str(tmp)) for a in case["args"]]
        return _render_cli(args, environ, monkeypatch, error=bool(case.get("error")))
    return ezpz.launch.resolve.plan_launch([("flags", dict(case["spec"]))], environ)


def _first_difference(got: list[str], want: list[str]) -> str:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"argv token {i}: got {g!r}, expected {w!r}"
    return f"argv length: got {len(got)} tokens, expected {len(want)}"


def _check_invariants(plan: Plan) -> None:
    assert shlex.split(str(plan)) == list(plan.argv)
    assert plan.np == plan.nhosts * plan.ppn
    assert len(plan.hosts) == plan.nhosts
    assert plan.env["MASTER_ADDR"] == plan.hosts[0]
    for path, _content in plan.files:
        assert Path(path).parent == Path(tempfile.gettempdir()), "launch files belong in the temp dir"
        assert not Path(path).exists(), "render must not write files (execute does)"


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_golden(
    case_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    fake_machine: Callable[..., Machine],
) -> None:
    case = tomllib.loads(case_path.read_text())
    monkeypatch.chdir(tmp_path)
    plan = render_case(case, tmp_path, monkeypatch, fake_machine)
    if isinstance(plan, Plan):
        _check_invariants(plan)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*case.get("write", {}), *case.get("generate", {}), "run"]
    ), "rendering wrote files into the working directory"
    outcome = record(plan, tmp_path) if isinstance(plan, Plan) else _normalise(plan, str(tmp_path))
    got = {"description": case["description"], **outcome}
    expected_path = GOLDEN / "expected" / f"{case_path.stem}.json"
    if _regen(request):
        expected_path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    if not expected_path.exists():
        pytest.fail(
            f"no golden for {case_path.name}: run pytest tests/test_golden.py --regen-golden and review the diff"
        )
    want = json.loads(expected_path.read_text())
    if "argv" in want:
        assert got.get("argv") == want["argv"], _first_difference(got.get("argv", []), want["argv"])
    assert got == want


def test_every_expectation_has_a_case() -> None:
    cases = {p.stem for p in CASES}
    orphans = sorted(p.stem for p in (GOLDEN / "expected").glob("*.json") if p.stem not in cases)
    assert not orphans, f"golden files without a case: {orphans}"


def test_every_template_has_a_golden() -> None:
    covered = {json.loads(p.read_text()).get("template") for p in (GOLDEN / "expected").glob("*.json")}
    missing = sorted(set(template_files()) - covered)
    assert not missing, f"templates without a golden case: {missing}"


def test_dialects_all_covered() -> None:
    launchers = {json.loads(p.read_text()).get("launcher") for p in (GOLDEN / "expected").glob("*.json")} - {None}
    assert launchers == {"pals", "hydra", "openmpi", "srun"}


def test_srun_with_a_hostfile_names_its_nodes(tmp_path: Path, fake_machine: Callable[..., Machine]) -> None:
    """A 4-node Slurm job and ``--hostfile`` naming 2 of them: srun must be told which (``--nodelist``).

    Kept out of the goldens on purpose: regenerating would freeze the wrong argv.
    """
    hosts = tmp_path / "hosts"
    hosts.write_text("nid000003\nnid000004\n")
    environ = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "nid[000001-000004]", "EZPZ_MASTER_PORT": MASTER_PORT}
    fake_machine(hostname="batch-node")
    plan = ezpz.launch.resolve.plan_launch(
        [("flags", {"command": ["python3", "train.py"], "hostfile": str(hosts)})], environ
    )
    assert plan.hosts == ("nid000003", "nid000004")
    assert plan.env["MASTER_ADDR"] == "nid000003"
    assert "--nodelist=nid[000003-000004]" in plan.argv, str(plan)


def test_regen_variable_fails_the_run_and_rewrites_nothing(tmp_path: Path) -> None:
    """``EZPZ_REGEN_GOLDEN=1`` (the old spelling) must stop a real pytest run, not rewrite the goldens.

    Runs pytest on a copy of this file, tests/conftest.py and tests/golden, with one golden made
    stale: a run that honoured the variable would rewrite it (and pass).
    """
    copy = tmp_path / "tests"
    shutil.copytree(GOLDEN, copy / "golden")
    for name in ("conftest.py", Path(__file__).name):
        shutil.copy(Path(__file__).parent / name, copy / name)
    case = CASES[0].stem
    expected = copy / "golden" / "expected" / f"{case}.json"
    stale = expected.read_text().replace('"np": ', '"np": 1', 1)
    expected.write_text(stale)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"tests/{Path(__file__).name}::test_golden[{case}]",
        ],
        env={**os.environ, "EZPZ_REGEN_GOLDEN": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "EZPZ_REGEN_GOLDEN is set" in out and "--regen-golden" in out, out
    assert expected.read_text() == stale, "the golden file was rewritten"
