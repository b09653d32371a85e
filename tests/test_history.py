"""ezpz.History in one process: statistics, JSONL, rotation, SIGKILL, report, bad input, W&B.

Multi-rank behaviour is in tests/test_history_multirank.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ezpz.cli import main as cli_main
from ezpz.errors import HistoryError
from ezpz.runtime.history import History, cross_rank_stats
from ezpz.runtime.metrics_io import JsonlWriter, jsonl_parts, read_jsonl, to_dataframe


@pytest.fixture
def warnings_seen() -> Iterator[list[str]]:
    """Messages the ezpz loggers emit at WARNING (the ezpz root does not propagate)."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger("ezpz")
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)


def run_py(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cross_rank_stats_exact_for_large_offsets() -> None:
    values = [1e6 + 1e-4 * k for k in range(4)]
    s = cross_rank_stats(values)
    assert s.std == pytest.approx(statistics.pstdev(values), rel=1e-9)
    assert s.std > 1e-4  # a naive E[x^2]-E[x]^2 in float64 loses this entirely
    assert (s.min, s.max, s.n) == (values[0], values[-1], 4)


def test_cross_rank_stats_nonfinite_rule() -> None:
    assert all(math.isnan(v) for v in cross_rank_stats([1.0, math.nan, 2.0])[:4])
    s = cross_rank_stats([1.0, math.inf])
    assert s.mean == math.inf and math.isnan(s.std) and (s.min, s.max) == (1.0, math.inf)


def test_world_one_without_torch(tmp_path: Path) -> None:
    proc = run_py(
        f"""
        import sys
        from ezpz.runtime.history import History
        h = History(outdir={str(tmp_path / "run")!r}, report=False)
        for i in range(3):
            line = h.update({{"loss": 0.047, "lr": 3e-4, "dt": 0.1, "epoch": 2}}, step=10 + i)
        print(line)
        print("torch" in sys.modules)
        """,
        {"WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["step=12 loss=0.047 lr=3.0e-04 dt=0.100 epoch=2", "False"]


def test_jsonl_record_summary_and_dataframe(tmp_path: Path, warnings_seen: list[str]) -> None:
    h = History(outdir=tmp_path, wandb=False, report=False)
    for i in range(4):
        h.update({"loss": 1.0 / (i + 1), "name": "adam", "shape": [1, 2], "step": i * 10})
    records = read_jsonl(tmp_path)
    assert [r["step"] for r in records] == [0, 10, 20, 30]
    assert records[1]["metrics"] == {"loss": 0.5} and records[1]["rank"] == 0
    assert records[1]["stats"]["loss"] == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 1}
    assert sum("'name' is not a number (str); skipped" in w for w in warnings_seen) == 1
    assert sum("'shape' is not a number (list)" in w for w in warnings_seen) == 1
    summary = h.summary()["loss"]
    assert summary["latest"] == 0.25 and summary["max"] == 1.0 and summary["count"] == 4
    assert summary["mean"] == pytest.approx((1 + 0.5 + 1 / 3 + 0.25) / 4)
    df = to_dataframe(tmp_path)
    assert list(df["step"]) == [0, 10, 20, 30]
    assert {"loss", "loss/std", "loss/min", "loss/max", "loss/n"} <= set(df.columns)


def test_memory_is_bounded() -> None:
    h = History(jsonl=False, report=False, wandb=False, max_points=64)
    for i in range(5000):
        h.update({"x": float(i)}, step=i)
    track = h.tracks["x"]
    assert 32 <= len(track.points) <= 64
    assert track.points[0][0] == 0 and track.points[-1][0] > 4800
    s = h.summary()["x"]
    assert s["mean"] == pytest.approx(2499.5) and s["std"] == pytest.approx(statistics.pstdev(range(5000)))


def test_nonfinite_values_are_kept_and_counted(tmp_path: Path) -> None:
    h = History(outdir=tmp_path, wandb=False, report=False)
    for v in (1.0, math.nan, math.inf, 3.0):
        h.update({"loss": v})
    assert h.summary()["loss"]["nonfinite"] == 2 and h.summary()["loss"]["mean"] == 2.0
    text = (tmp_path / "metrics.jsonl").read_text()
    for line in text.splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert [r["metrics"]["loss"] for r in read_jsonl(tmp_path)][2] == math.inf


def test_rotation_keeps_every_line_in_order(tmp_path: Path) -> None:
    h = History(outdir=tmp_path, wandb=False, report=False, jsonl_max_bytes=600)
    for i in range(40):
        h.update({"loss": float(i), "lr": 0.1}, step=i)
    parts = jsonl_parts(tmp_path)
    assert len(parts) > 3 and parts[-1].name == "metrics.jsonl" and parts[0].name == "metrics.1.jsonl"
    assert all(p.stat().st_size <= 600 for p in parts)
    assert [r["step"] for r in read_jsonl(tmp_path)] == list(range(40))


def test_finalize_writes_report_and_plots(tmp_path: Path) -> None:
    h = History(outdir=tmp_path, wandb=False)
    for i in range(30):
        h.update({"loss": 1.0 / (i + 1)}, step=i)
    assert h.finalize() == tmp_path
    report = (tmp_path / "report.md").read_text()
    assert "## Environment" in report and "| loss | 0.033 | " in report and "## loss" in report
    assert "![loss](plots/loss.png)" in report and "```text" in report
    assert (tmp_path / "plots" / "loss.png").stat().st_size > 1000
    assert "┤" in (tmp_path / "plots" / "loss.txt").read_text()
    assert json.loads((tmp_path / "meta.json").read_text())["world_size"] == 1


def test_sigkill_leaves_parseable_jsonl_and_report_rebuilds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ezpz.runtime.history import History\n"
            f"h = History(outdir={str(run_dir)!r}, wandb=False, jsonl_max_bytes=20000)\n"
            "i = 0\n"
            "while True:\n"
            "    h.update({'loss': 1.0 / (i + 1), 'acc': i % 7 / 7, 'dt': 0.01}, step=i)\n"
            "    i += 1\n",
        ],
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    live = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (run_dir / "metrics.2.jsonl").exists():
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert live.exists() and (run_dir / "metrics.2.jsonl").exists()
    lines = [line for part in jsonl_parts(run_dir) for line in part.read_text().splitlines()]
    assert len(lines) > 100
    steps = [json.loads(line)["step"] for line in lines]  # every line parses
    assert steps == list(range(len(steps)))
    assert not (run_dir / "report.md").exists()
    assert cli_main(["report", str(run_dir), "--no-plot"]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.md")
    (row,) = [r for r in (run_dir / "report.md").read_text().splitlines() if r.startswith("| loss |")]
    assert row.endswith(f"| {len(steps)} | 0 |")


@pytest.mark.parametrize(
    ("metrics", "match"),
    [
        ({"train/loss": 1.0}, "no '/' or spaces"),
        ({"my loss": 1.0}, "given 'my loss'"),
        ({"time": 1.0}, "reserved"),
        ({1: 1.0}, "no '/' or spaces"),
    ],
)
def test_bad_keys_raise_and_keep_what_was_logged(tmp_path: Path, metrics: dict, match: str) -> None:
    h = History(outdir=tmp_path, wandb=False, report=False)
    h.update({"loss": 1.0})
    with pytest.raises(HistoryError, match=match):
        h.update({"ok": 2.0, **metrics})
    h.update({"loss": 3.0})
    assert [r["metrics"]["loss"] for r in read_jsonl(tmp_path)] == [1.0, 3.0]


def test_bad_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HistoryError, match="output directory is not writable"):
        History(outdir=blocker / "run", wandb=False)
    with pytest.raises(HistoryError, match="directory does not exist"):
        History(jsonl=tmp_path / "missing" / "m.jsonl", report=False, wandb=False)
    with pytest.raises(HistoryError, match="takes a mapping"):
        History(jsonl=False, report=False, wandb=False).update([("loss", 1.0)])  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="step must be a number"):
        History(jsonl=False, report=False, wandb=False).update({"loss": 1.0}, step="ten")  # type: ignore[arg-type]
    monkeypatch.setenv("EZPZ_HISTORY_JSONL", "maybe")
    with pytest.raises(HistoryError, match="EZPZ_HISTORY_JSONL is not a boolean"):
        History(outdir=tmp_path / "x", wandb=False)
    monkeypatch.setenv("EZPZ_HISTORY_JSONL", "0")
    History(outdir=tmp_path / "y", report=False, wandb=False).update({"loss": 1.0})
    assert not (tmp_path / "y").exists()


def test_explicit_jsonl_path(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    h = History(outdir=tmp_path / "run", jsonl=path, report=False, wandb=False)
    h.update({"loss": 1.0})
    assert [r["metrics"] for r in read_jsonl(path)] == [{"loss": 1.0}]
    w = JsonlWriter(tmp_path / "raw.jsonl", max_bytes=0)
    w.write({"a": float("nan")})
    w.close()
    assert (tmp_path / "raw.jsonl").read_text() == '{"a":"nan"}\n'


WANDB_SCRIPT = """
import glob, os, sys
from ezpz.runtime.history import History
h = History(outdir=sys.argv[1] if len(sys.argv) > 1 else {run!r}, wandb=True, plot=False)
for i in range(3):
    h.update({{"loss": 1.0 / (i + 1)}}, step=i)
h.finalize()
print("runs:", sorted(os.path.basename(p) for p in glob.glob({run!r} + "/wandb/*run-*")))
"""


def test_wandb_offline_writes_a_run(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    secret = "0123456789abcdef0123456789abcdef01234567"
    run = str(tmp_path / "run")
    proc = run_py(
        WANDB_SCRIPT.format(run=run),
        {"WANDB_MODE": "offline", "WANDB_API_KEY": secret, "WANDB_SILENT": "true"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runs: ['offline-run-" in proc.stdout
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    assert run_file.stat().st_size > 0
    assert secret not in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_wandb_disabled_or_missing_never_breaks(tmp_path: Path) -> None:
    disabled = run_py(WANDB_SCRIPT.format(run=str(tmp_path / "a")), {"WANDB_MODE": "disabled"}, timeout=120)
    assert disabled.returncode == 0, disabled.stderr[-2000:]
    assert "runs: []" in disabled.stdout
    # wandb not installed: a None entry in sys.modules makes `import wandb` raise ImportError
    missing = run_py(
        "import sys; sys.modules['wandb'] = None\n" + WANDB_SCRIPT.format(run=str(tmp_path / "b")),
        {"NO_COLOR": "1"},
    )
    assert missing.returncode == 0, missing.stderr[-2000:]
    assert "wandb is not installed: pip install 'ezpz[wandb]'" in missing.stderr
    assert (tmp_path / "b" / "metrics.jsonl").exists()
