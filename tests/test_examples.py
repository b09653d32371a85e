"""Smoke tests: every example runs a few steps on 2 CPU ranks under ``ezpz launch``.

Real processes: MPICH hydra ranks, torch gloo on CPU, History with plots off
(matplotlib costs seconds), W&B disabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_transformer.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ezpz-cache")


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NO_COLOR": "1",
        "EZPZ_HISTORY_PLOT": "0",
        "EZPZ_HISTORY_DIR": str(tmp_path / "history"),
        "WANDB_MODE": "disabled",
    }


def _run(cmd: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)


def test_ezpz_test_trains_below_unigram_entropy_on_two_ranks(tmp_path: Path, cache_dir: Path) -> None:
    summary = tmp_path / "summary.json"
    cmd = [
        sys.executable,
        "-m",
        "ezpz",
        "test",
        "-n",
        "2",
        "--max-steps",
        "50",
        "--",
        "--summary",
        str(summary),
        "--cache-dir",
        str(cache_dir),
    ]
    run = _run(cmd, tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(summary.read_text())
    assert result["world_size"] == 2 and result["steps"] == 50
    assert result["final_loss"] < result["unigram_entropy"] - 0.2, result
    assert result["val_loss"] < result["unigram_entropy"], result
    assert result["tokens_per_s"] > 0 and result["mfu"] is None  # CPU: no known peak
    assert (Path(result["run_dir"]) / "report.md").is_file()
    log = run.stderr
    assert "step 50/50 loss=" in log and "sample:" in log and "run report:" in log
    assert log.count("step 50/50 loss=") == 1, "progress lines come from rank 0 only"


def test_transformer_fsdp_on_random_tokens(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    cmd = [
        sys.executable,
        "-m",
        "ezpz",
        "launch",
        "-n",
        "2",
        "--",
        sys.executable,
        str(EXAMPLE),
        "--random",
        "--strategy",
        "fsdp",
        "--max-steps",
        "3",
        "--layers",
        "2",
        "--dim",
        "32",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--sample-tokens",
        "8",
        "--summary",
        str(summary),
    ]
    run = _run(cmd, tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(summary.read_text())
    assert result["world_size"] == 2 and result["steps"] == 3
    assert "wrap_fsdp: sharded 2 blocks" in run.stderr


def test_missing_extra_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['datasets'] = None\n")
    env = {**_env(tmp_path), "PYTHONPATH": str(blocker)}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--max-steps", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "pip install 'ezpz[data]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_model_shape_is_one_clear_line(tmp_path: Path) -> None:
    run = _run([sys.executable, str(EXAMPLE), "--random", "--dim", "30", "--heads", "4"], tmp_path)
    assert run.returncode == 2
    assert "model dim must be a multiple of heads" in run.stderr and "Traceback" not in run.stderr
