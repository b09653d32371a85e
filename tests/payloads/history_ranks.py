"""Multi-rank checks for ezpz.History, launched by tests/test_history_multirank.py.

Usage: ``history_ranks.py OUTDIR`` under ``ezpz launch -n 4``.  The payload
initialises gloo itself (no ezpz.runtime.dist), counts every torch.distributed
collective, runs the phases below, and writes ``OUTDIR/rank<R>.json`` with
its own raw values, the collective counts and the errors it saw; the test
recomputes the statistics from those files and compares with rank 0's JSONL.

Phases: exact stats (5 steps, incl. 1e6 + eps and a tensor), mismatched
metric sets, NaN/inf/strings/lists, a bad key on one rank only, one rank
skipping a step, more metrics than the packed vector holds (it grows: a second
all_gather, once), and a lone rank timing out.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ezpz.errors import HistoryError
from ezpz.runtime.history import History

COLLECTIVES = (
    "all_gather_single", "all_gather_into_tensor", "all_reduce", "all_gather", "all_gather_object",
    "broadcast", "broadcast_object_list", "reduce", "gather", "scatter", "reduce_scatter",
    "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "barrier",
)  # fmt: skip
calls = {"n": 0}


def count_collectives() -> None:
    for name in COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None:
            continue

        def wrapper(*args, __fn=fn, **kwargs):
            calls["n"] += 1
            return __fn(*args, **kwargs)

        setattr(dist, name, wrapper)


def main(outdir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    count_collectives()
    result: dict = {"rank": rank, "world": world, "values": {}, "per_update": [], "errors": {}}
    h = History(outdir=outdir / "run", wandb=False, plot=False)

    def update(metrics: dict, step: int) -> str:
        before = calls["n"]
        try:
            return h.update(metrics, step=step)
        finally:
            result["per_update"].append(calls["n"] - before)

    # A: exact statistics
    for step in range(5):
        metrics = {
            "loss": 1.0 / (step + 1) + 0.01 * rank,
            "big": 1e6 + 1e-4 * rank,
            "spread": float(rank * rank * (step + 1)),
            "tokens": 1000 + rank,
            "tensor": torch.tensor(rank + 0.25, dtype=torch.float32),
        }
        result["values"][str(step)] = {k: float(v) for k, v in metrics.items()}
        result["line"] = update(metrics, step)
    # B: mismatched metric sets (rank 1 lacks "x", rank 3 has "extra")
    mixed = {"x": float(rank), "y": 2.0 * rank}
    if rank == 1:
        del mixed["x"]
    if rank == 3:
        mixed["extra"] = 7.0
    update(mixed, 10)
    # C: NaN, inf, string, list, multi-element tensor
    odd = {
        "nan": float("nan") if rank == 2 else 1.0,
        "inf": float("inf") if rank == 1 else 1.0,
        "name": "adam",
        "shape": [1, 2],
        "vec": torch.ones(3),
        "ok": 1.0,
    }
    update(odd, 11)
    # D: a bad key on rank 2 only: every rank raises, nobody hangs
    try:
        update({"ok": 1.0, **({"bad key": 1.0} if rank == 2 else {})}, 12)
    except HistoryError as exc:
        result["errors"]["bad_key"] = str(exc)
    # E: rank 1 skips step 13; the next collective pairs steps 13 and 14
    try:
        if rank != 1:
            update({"ok": 1.0}, 13)
        else:
            update({"ok": 1.0}, 14)
    except HistoryError as exc:
        result["errors"]["skipped"] = str(exc)
    # G: past the vector's first size (32 metrics): 40 on every rank, then 70 on rank 2 only
    wide = {f"g{i}": 100.0 * rank + i for i in range(40)}
    result["wide"] = wide
    update(wide, 15)
    update({**wide, **({f"h{i}": float(i) for i in range(30)} if rank == 2 else {})}, 16)
    update(wide, 17)
    # F: a lone rank times out; the others stay alive (and out of the collective) until it has
    done = outdir / "lone-done"
    if rank == 0:
        lone = History(jsonl=False, report=False, wandb=False, timeout=1.5)
        start = time.monotonic()
        try:
            lone.update({"ok": 1.0}, step=0)
        except HistoryError as exc:
            result["errors"]["timeout"] = str(exc)
        result["timeout_s"] = time.monotonic() - start
        done.write_text("")
    else:
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    start = time.monotonic()
    h.finalize()
    result["finalize_s"] = time.monotonic() - start
    (outdir / f"rank{rank}.json").write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # rank 0 still has the lone all_gather pending; do not tear down gloo


if __name__ == "__main__":
    main(Path(sys.argv[1]))
