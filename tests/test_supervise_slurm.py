"""Run supervision under real ``srun`` on the local two-node Slurm cluster (``tests/slurm.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import slurm

PAYLOAD = Path(__file__).parent / "payloads" / "supervise_cases.py"


@pytest.fixture(autouse=True)
def _cluster() -> None:
    slurm.require_cluster()


def test_srun_failure_summary_names_rank_host_and_stops_the_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = slurm.in_allocation(
        [
            sys.executable,
            "-m",
            "ezpz",
            "launch",
            "--run-dir",
            str(run),
            "--",
            sys.executable,
            str(PAYLOAD),
            "fail",
            str(tmp_path),
        ],
        limit_s=90,
        extra_env={"PYTHONUNBUFFERED": ""},
    )
    assert out.returncode == 1, out.stderr
    summary = out.stderr[out.stderr.index("ezpz: run failed") :]
    # 2 ranks per node: rank 2 is local rank 0 on the second node.
    assert "rank 2 failed first: exit 1" in summary
    assert "(local rank 0, host n2)" in summary
    assert "RuntimeError: rank 2 lost its optimizer state" in summary
    record = json.loads((run / "result.json").read_text())
    assert record["first_failure"]["host"] == "n2"
    # The others sleep 60 s: srun --kill-on-bad-exit and ezpz stopped them.
    assert record["duration_s"] < 45
    assert "[2@n2] RuntimeError: rank 2 lost its optimizer state" in out.stderr
    assert "Traceback (most recent call last):" in (run / "rank-2.log").read_text()


def test_srun_timeout_dumps_stacks_through_scancel(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = slurm.in_allocation(
        [
            sys.executable,
            "-m",
            "ezpz",
            "launch",
            "--timeout",
            "4",
            "--run-dir",
            str(run),
            "--",
            sys.executable,
            str(PAYLOAD),
            "hang",
            str(tmp_path),
        ],
        limit_s=90,
    )
    assert out.returncode == 124, out.stderr
    assert "rank 0 was stuck in blocked_in_collective_for_test" in out.stderr
    for rank in range(4):
        assert "in blocked_in_collective_for_test" in (run / f"rank-{rank}.log").read_text()
