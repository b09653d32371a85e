"""ezpz.History across 4 real ranks: `ezpz launch -n 4` (MPICH hydra) + torch gloo on CPU.

One launch runs every multi-rank phase (see tests/payloads/history_ranks.py);
the tests below check its outputs.  Expected statistics are recomputed here
from each rank's own raw values.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from ezpz.runtime.metrics_io import read_jsonl

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests" / "payloads" / "history_ranks.py"
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("history4")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "ezpz", "launch", "-n", "4", "--", sys.executable, str(PAYLOAD), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(4)]
    return out, ranks


def test_one_collective_per_update(run: tuple[Path, list[dict]]) -> None:
    _, ranks = run
    for r in ranks:
        assert r["world"] == 4
        # 5 exact steps, mismatch, odd values, bad key, skipped step: 9 updates, 1 collective each;
        # then the vector grows twice (40 metrics, then 70 on one rank): 2 collectives, on every rank
        assert r["per_update"] == [1] * 9 + [2, 2, 1], r["per_update"]


def test_stats_equal_the_ranks_own_values(run: tuple[Path, list[dict]]) -> None:
    out, ranks = run
    records = {rec["step"]: rec for rec in read_jsonl(out / "run")}
    for step in range(5):
        stats = records[step]["stats"]
        for key in ("loss", "big", "spread", "tokens", "tensor"):
            values = [r["values"][str(step)][key] for r in ranks]
            got = stats[key]
            assert got["n"] == 4
            assert got["mean"] == pytest.approx(math.fsum(values) / 4, rel=1e-15, abs=0)
            assert got["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9)
            assert (got["min"], got["max"]) == (min(values), max(values))
        # rank 0's own values are logged next to the aggregate
        assert records[step]["metrics"]["loss"] == ranks[0]["values"][str(step)]["loss"]
    # 1e6 + k*1e-4: std must not collapse (a float32 or sum-of-squares version gives 0 or garbage)
    assert records[0]["stats"]["big"]["std"] == pytest.approx(1e-4 * math.sqrt(1.25), rel=1e-6)
    assert ranks[0]["line"].startswith("step=4 loss=0.215(±0.011) big=1.0e+06(±1.1e-04)")
    assert len({r["line"] for r in ranks}) == 1  # every rank returns the same line


def test_mismatched_sets_and_odd_values(run: tuple[Path, list[dict]]) -> None:
    out, _ = run
    records = {rec["step"]: rec for rec in read_jsonl(out / "run")}
    mixed = records[10]["stats"]
    assert mixed["x"]["n"] == 3 and mixed["x"]["mean"] == pytest.approx((0 + 2 + 3) / 3)
    assert mixed["y"]["n"] == 4 and "extra" not in mixed  # rank 0 cannot name rank 3's extra key
    odd = records[11]["stats"]
    assert set(odd) == {"nan", "inf", "ok"}  # string, list, 3-element tensor skipped
    assert all(math.isnan(odd["nan"][k]) for k in ("mean", "std", "min", "max"))
    assert odd["inf"]["mean"] == math.inf and math.isnan(odd["inf"]["std"]) and odd["inf"]["min"] == 1.0
    text = (out / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON on disk


def test_bad_input_raises_everywhere_without_hanging(run: tuple[Path, list[dict]]) -> None:
    _, ranks = run
    assert "no '/' or spaces" in ranks[2]["errors"]["bad_key"] and "'bad key'" in ranks[2]["errors"]["bad_key"]
    for r in (0, 1, 3):
        assert "rejected the metrics of other ranks" in ranks[r]["errors"]["bad_key"]
        assert "ranks [2]" in ranks[r]["errors"]["bad_key"]
    for r in ranks:
        assert "not called on every rank at the same step" in r["errors"]["skipped"]
        assert "rank 1: call 8 step 14" in r["errors"]["skipped"]
    assert "timed out" in ranks[0]["errors"]["timeout"]
    assert "timeout 1.5 s" in ranks[0]["errors"]["timeout"]
    # It waited for its timeout (the other ranks stayed alive until it gave up), not failed early;
    # the upper bound only guards against a hang (4 ranks on a loaded 2-core machine).
    assert 1.4 < ranks[0]["timeout_s"] < 60


def test_vector_growth_keeps_every_metric(run: tuple[Path, list[dict]]) -> None:
    """More metrics than the first packed vector holds: every one still gets all 4 ranks' values."""
    out, ranks = run
    records = {rec["step"]: rec for rec in read_jsonl(out / "run")}
    for step in (15, 16, 17):
        stats = records[step]["stats"]
        assert sorted(stats) == sorted(ranks[0]["wide"]), step  # rank 0 cannot name rank 2's h* keys
        for key in ranks[0]["wide"]:
            values = [r["wide"][key] for r in ranks]
            assert stats[key]["n"] == 4, (step, key)
            assert stats[key]["mean"] == pytest.approx(sum(values) / 4)
            assert (stats[key]["min"], stats[key]["max"]) == (min(values), max(values))
