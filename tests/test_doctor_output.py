"""``ezpz doctor`` for people: W&B is "not in use" unless asked for, and the table never splits a path mid-name."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ezpz.doctor.checks import check_wandb
from ezpz.doctor.report import render_table, results_json, wrap_value
from ezpz.model.checks import CheckResult, DoctorContext

pytest.importorskip("wandb")  # the [all] extra; the "installed but not asked for" case needs it

LONG = "/home/someone/projects/a-rather-long-project-name/.venv-for-the-cluster/bin/mpiexec"


def _wandb(tmp_path: Path, **env: str) -> CheckResult:
    return check_wandb(DoctorContext(environ={"HOME": str(tmp_path), "PATH": "/usr/bin", **env}))


def test_wandb_installed_but_never_asked_for_is_not_in_use(tmp_path: Path) -> None:
    result = _wandb(tmp_path)
    assert result.status == "ok" and result.message.startswith("not in use"), result
    assert result.remedy == "" and result.details["in_use"] is False


@pytest.mark.parametrize(
    ("env", "asked_by"),
    [
        ({"EZPZ_WANDB": "1"}, "EZPZ_WANDB"),
        ({"WANDB_PROJECT": "p"}, "WANDB_PROJECT"),
        ({"WANDB_MODE": "online"}, "WANDB_MODE"),
    ],
)
def test_wandb_asked_for_without_credentials_warns(tmp_path: Path, env: dict[str, str], asked_by: str) -> None:
    result = _wandb(tmp_path, **env)
    assert result.status == "warning" and "no credentials" in result.message and "wandb login" in result.remedy
    assert result.details["asked_by"] == asked_by


@pytest.mark.parametrize("off", [{"WANDB_MODE": "disabled"}, {"WANDB_DISABLED": "true"}])
def test_disabled_wins_over_being_asked(tmp_path: Path, off: dict[str, str]) -> None:
    result = _wandb(tmp_path, EZPZ_WANDB="1", WANDB_PROJECT="p", **off)
    assert result.status == "ok" and result.message.startswith("not in use (disabled")


def test_the_real_doctor_on_this_machine_says_not_in_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "EZPZ_"))}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "ezpz", "doctor", "--json"], capture_output=True, text=True, env=env)
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["wandb"]["status"] == "ok" and checks["wandb"]["message"].startswith("not in use")


def _found_cells(rendered: str) -> list[str]:
    """The 'found' column (third cell) of each body line of a rich table."""
    return [line.split("│")[3].strip() for line in rendered.splitlines() if line.startswith("│")]


def test_table_at_80_columns_wraps_paths_after_a_separator_only() -> None:
    result = CheckResult("mpi4py", "error", f"mpi4py loads Open MPI 4.1.4 but {LONG} is MPICH 5.0.2", "rebuild it")
    stream = io.StringIO()
    Console(file=stream, width=80, color_system=None).print(render_table([result]))
    rendered = stream.getvalue()
    assert all(len(line) <= 80 for line in rendered.splitlines())
    cells = _found_cells(rendered)
    words = " ".join(cells).split()
    # The path comes back whole when fragments that end in "/" are joined to what follows.
    joined = " ".join(words).replace("/ ", "/")
    assert LONG in joined, cells
    pieces = [w for w in words if w in LONG]  # the path's fragments, one per line it spans
    assert len(pieces) > 1 and all(piece.endswith("/") for piece in pieces[:-1]), pieces


@pytest.mark.parametrize("width", [8, 12, 20, 33, 80])
def test_wrap_value_keeps_every_character_and_breaks_paths_at_slashes(width: int) -> None:
    text = f"found {LONG}: MPICH 5.0.2"
    lines = wrap_value(text, width)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert all(len(line) <= width for line in lines)
    for line in lines:
        last = line.split()[-1]
        if last in LONG and not LONG.endswith(last) and len(last) < width:
            assert last.endswith("/"), (width, lines)


def test_json_is_unchanged_by_the_table() -> None:
    result = CheckResult("mpi launcher", "ok", f"{LONG}: MPICH 5.0.2", "", {"path": LONG})
    assert json.loads(results_json([result])) == {
        "ok": True,
        "checks": [
            {
                "name": "mpi launcher",
                "status": "ok",
                "message": f"{LONG}: MPICH 5.0.2",
                "remedy": "",
                "details": {"path": LONG},
            }
        ],
    }
