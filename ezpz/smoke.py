"""The smoke test behind ``ezpz test``: a short transformer run under ``ezpz launch``, and its verdict.

:func:`smoke_test` launches ``examples/train_transformer.py`` on ``np`` ranks
with a tiny model and ``--check``, writes everything the run produces (the
History report, the example's summary) under one output directory (a fresh
temporary one by default, never the working directory), and returns a
:class:`SmokeResult` whose :meth:`~SmokeResult.line` is the verdict::

    ezpz test: PASS (2 ranks, loss 2.71 < 3.30, 14 s)
    ezpz test: FAIL (2 ranks, loss 3.41 is not below 3.30, 9 s): the loss did not fall below ...
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ezpz.errors import LaunchError, plural
from ezpz.launch.execute import execute
from ezpz.launch.resolve import plan_launch
from ezpz.model.plan import Plan

__all__ = ["SMOKE_ARGS", "SmokeResult", "example_script", "smoke_command", "smoke_outdir", "smoke_plan", "smoke_test"]

EXAMPLE = "train_transformer.py"
#: The small configuration: about 0.1 M parameters, 2 cores, well under a minute.
SMOKE_ARGS = (
    "--layers",
    "2",
    "--heads",
    "4",
    "--dim",
    "64",
    "--seq-len",
    "64",
    "--batch-size",
    "16",
    "--lr",
    "3e-3",
    "--sample-tokens",
    "80",
    "--check",
)
SUMMARY = "summary.json"


@dataclasses.dataclass(frozen=True)
class SmokeResult:
    """What one smoke test showed.

    Attributes:
        passed: the launch exited 0 and the final loss fell below the text's unigram entropy.
        ranks: ranks launched.
        seconds: wall time of the launch.
        outdir: where the run wrote its outputs.
        code: the launch's exit status.
        loss: the final training loss (mean of the last steps over ranks), if the run got that far.
        threshold: the unigram entropy the loss must fall below, if known.
    """

    passed: bool
    ranks: int
    seconds: float
    outdir: Path
    code: int
    loss: float | None = None
    threshold: float | None = None

    def line(self) -> str:
        """The one-line verdict: ``ezpz test: PASS (...)`` or ``ezpz test: FAIL (...): what failed``."""
        facts = [plural(self.ranks, "rank")]
        if self.loss is not None and self.threshold is not None:
            below = self.loss < self.threshold
            facts.append(f"loss {self.loss:.2f} {'<' if below else 'is not below'} {self.threshold:.2f}")
        facts.append(f"{self.seconds:.0f} s")
        verdict = f"ezpz test: {'PASS' if self.passed else 'FAIL'} ({', '.join(facts)})"
        if self.passed:
            return verdict
        if self.loss is None:
            why = f"the launch exited {self.code} before the example wrote its summary; its output is above"
        elif self.code != 0 and (self.threshold is None or self.loss < self.threshold):
            why = f"the launch exited {self.code}; its output is above"
        else:
            why = "the loss did not fall below the unigram entropy of the text"
        return f"{verdict}: {why}"


def example_script() -> Path:
    """Return the transformer example: shipped in the wheel, else in the source checkout."""
    package = Path(__file__).resolve().parent
    candidates = (package / "examples" / EXAMPLE, package.parent / "examples" / EXAMPLE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LaunchError(
        "the transformer example is not installed",
        ", ".join(str(c) for c in candidates),
        "reinstall ezpz, or run from a source checkout",
    )


def smoke_outdir() -> Path:
    """A new output directory name under the temporary directory (not created)."""
    return Path(tempfile.gettempdir()) / f"ezpz-test-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def smoke_command(max_steps: int, extra: Sequence[str], outdir: Path) -> list[str]:
    """Return the per-rank command: this interpreter, the example, the small config, outputs under ``outdir``.

    ``extra`` comes last, so an ``--outdir`` or ``--summary`` there wins (as argparse reads the last one).
    """
    return [
        sys.executable,
        str(example_script()),
        *SMOKE_ARGS,
        "--max-steps",
        str(max_steps),
        "--outdir",
        str(outdir / "history"),
        "--summary",
        str(outdir / SUMMARY),
        *extra,
    ]


def _summary_path(command: Sequence[str]) -> Path:
    """The ``--summary`` the example will use: the last one on its command line."""
    found = ""
    for i, word in enumerate(command):
        if word == "--summary" and i + 1 < len(command):
            found = command[i + 1]
        elif word.startswith("--summary="):
            found = word.partition("=")[2]
    return Path(found)


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def smoke_plan(np: int, max_steps: int, extra: Sequence[str], outdir: Path) -> Plan:
    """The launch of the smoke test: ``np`` ranks of :func:`smoke_command`, W&B files (if any) under ``outdir``."""
    command = smoke_command(max_steps, extra, outdir)
    # The run directory (logs, result.json) goes with the outputs, not into the cwd.
    flags = {"command": command, "np": np, "env": {"WANDB_DIR": str(outdir)}, "run_dir": str(outdir / "run")}
    return plan_launch([("flags", flags)])


def smoke_test(np: int = 2, max_steps: int = 50, extra: Sequence[str] = (), outdir: Path | None = None) -> SmokeResult:
    """Run the smoke test and return its verdict; outputs go under ``outdir`` (default: :func:`smoke_outdir`)."""
    outdir = (outdir or smoke_outdir()).resolve()
    plan = smoke_plan(np, max_steps, extra, outdir)
    command = smoke_command(max_steps, extra, outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    code = execute(plan)
    seconds = time.monotonic() - start
    summary = _read_summary(_summary_path(command))
    loss, threshold = _number(summary.get("final_loss")), _number(summary.get("unigram_entropy"))
    passed = code == 0 and loss is not None and threshold is not None and loss < threshold
    return SmokeResult(passed, plan.np, seconds, outdir, code, loss, threshold)
