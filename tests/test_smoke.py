"""``ezpz test`` ends with one verdict line, exits 0/1, and writes nothing into the working directory.

Real processes: 2 MPICH hydra ranks, torch gloo on CPU, W&B disabled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ezpz.smoke import SmokeResult

pytestmark = pytest.mark.slow

VERDICT = re.compile(
    r"^ezpz test: (PASS|FAIL) \(2 ranks, loss (\d+\.\d\d) (<|is not below) (\d+\.\d\d), \d+ s\)(: .+)?$"
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ezpz-cache")


def _ezpz_test(tmp_path: Path, cache_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    pytest.importorskip("torch")
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EZPZ_")}
    env.update(NO_COLOR="1", EZPZ_HISTORY_PLOT="0", WANDB_MODE="disabled", TMPDIR=str(tmp))
    cmd = [sys.executable, "-m", "ezpz", "test", "-n", "2", *args, "--", "--cache-dir", str(cache_dir)]
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return run, cwd, tmp


def test_ezpz_test_passes_with_a_verdict_and_keeps_the_cwd_clean(tmp_path: Path, cache_dir: Path) -> None:
    run, cwd, tmp = _ezpz_test(tmp_path, cache_dir, "--max-steps", "50")
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.rstrip().splitlines()[-1]
    match = VERDICT.match(last)
    assert match and match[1] == "PASS" and match[3] == "<", last
    assert float(match[2]) < float(match[4])
    assert list(cwd.iterdir()) == [], "ezpz test wrote into the working directory"
    (outdir,) = tmp.glob("ezpz-test-*")
    assert f"outputs: {outdir}" in run.stdout
    assert (outdir / "summary.json").is_file() and (outdir / "history" / "report.md").is_file()
    # The example's progress (not a terminal: plain lines) carries /N, elapsed and ETA, and the
    # end names the report file itself.
    assert re.search(r"step 50/50 loss=\S+ .*\| elapsed \d+:\d\d, ETA 0:00", run.stderr), run.stderr[-2000:]
    assert re.search(r"step (?!50/)\d+/50 .*\| elapsed \d+:\d\d, ETA \d+:\d\d", run.stderr), run.stderr[-2000:]
    assert f"run report: {outdir / 'history' / 'report.md'}" in run.stderr
    assert run.stderr.count("step 50/50 ") == 1, "progress comes from rank 0 only"


def test_ezpz_test_fails_with_a_verdict_naming_what_failed(tmp_path: Path, cache_dir: Path) -> None:
    """One step cannot bring the loss below the unigram entropy: the run must say FAIL and exit 1."""
    run, cwd, _ = _ezpz_test(tmp_path, cache_dir, "--max-steps", "1")
    assert run.returncode == 1, run.stderr[-3000:]
    last = run.stdout.rstrip().splitlines()[-1]
    match = VERDICT.match(last)
    assert match and match[1] == "FAIL" and match[3] == "is not below", last
    assert "did not fall below the unigram entropy" in last
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (SmokeResult(True, 1, 3.4, Path("/o"), 0, 2.714, 3.3), "ezpz test: PASS (1 rank, loss 2.71 < 3.30, 3 s)"),
        (
            SmokeResult(False, 4, 12.0, Path("/o"), 127, None, None),
            "ezpz test: FAIL (4 ranks, 12 s): the launch exited 127 before the example wrote its summary;"
            " its output is above",
        ),
        (
            SmokeResult(False, 2, 9.0, Path("/o"), 1, 2.5, 3.3),
            "ezpz test: FAIL (2 ranks, loss 2.50 < 3.30, 9 s): the launch exited 1; its output is above",
        ),
    ],
)
def test_verdict_lines(result: SmokeResult, expected: str) -> None:
    assert result.line() == expected
