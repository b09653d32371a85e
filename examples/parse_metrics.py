"""Parse what ezpz.History and the ezpz logger write: metrics JSONL and log JSONL.

    python examples/parse_metrics.py            # makes a small demo run first
    python examples/parse_metrics.py RUN_DIR    # or reads an existing run

Shows the three ways in: plain ``json`` line by line (what any tool can do),
``ezpz.runtime.metrics_io.read_jsonl`` (rotated parts in order, ``"nan"`` strings back
to floats) and ``to_dataframe`` (pandas, one row per step), then rebuilds the
Markdown report and reads the JSONL log file.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

from ezpz.log import add_log_file, get_logger
from ezpz.runtime.history import History
from ezpz.runtime.metrics_io import jsonl_parts, read_jsonl, to_dataframe
from ezpz.runtime.report import report_from_jsonl

log = get_logger("parse_metrics")


def demo_run(root: Path) -> Path:
    """Write a small run (metrics + a JSONL log) and return its directory."""
    add_log_file(root / "log.jsonl")
    h = History(outdir=root / "run", wandb=False)
    for step in range(50):
        loss = 2.0 * math.exp(-step / 15) + 0.05
        log.info(h.update({"loss": loss, "lr": 3e-4, "dt": 0.1}, step=step))
    h.update({"loss": float("nan"), "lr": 3e-4, "dt": 0.1}, step=50)
    return h.finalize()


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ezpz-parse-"))
    run = Path(sys.argv[1]) if len(sys.argv) > 1 else demo_run(root)

    # 1. Any JSON tool: one object per line; non-finite values are the strings "nan"/"inf"/"-inf".
    first = json.loads(jsonl_parts(run)[0].read_text().splitlines()[0])
    log.info("fields of one record: %s", sorted(first))
    log.info("stats of 'loss' at step %s: %s", first["step"], first["stats"].get("loss"))

    # 2. All records (rotated files included), as dicts.
    records = read_jsonl(run)
    log.info("%d records; last loss mean = %s", len(records), records[-1]["stats"]["loss"]["mean"])

    # 3. A DataFrame: step, time, <metric> (cross-rank mean), <metric>/std|min|max|n.
    df = to_dataframe(run)
    log.info("DataFrame columns: %s", list(df.columns))
    log.info("loss every 10 steps:\n%s", df[["step", "loss", "loss/std"]].iloc[::10].to_string(index=False))

    # 4. The Markdown report, rebuilt from the JSONL alone (same as `ezpz report RUN_DIR`).
    log.info("report: %s", report_from_jsonl(run))

    # 5. The JSONL log file (EZPZ_LOG_FILE / ezpz launch --log-file / add_log_file).
    log_file = root / "log.jsonl"
    if log_file.exists():
        entries = [json.loads(line) for line in log_file.read_text().splitlines()]
        log.info("%d log records; first: %s", len(entries), entries[0])


if __name__ == "__main__":
    main()
