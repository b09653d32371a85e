"""Benchmark History.update against naive per-metric all_reduces.

Run at world size 4 (the figures in docs/history.md come from this):

    python -m ezpz launch -n 4 -- python benchmarks/bench_history.py [STEPS] [METRICS]

Each rank times ``STEPS`` updates of ``METRICS`` metrics three ways and rank 0
prints µs per update:

* ``history``: ``History.update`` (one all_gather for all metrics, JSONL and
  report off so only the statistics are measured);
* ``naive-1``: one all_reduce (sum) per metric;
* ``naive-4``: four all_reduces per metric (sum, sum of squares, max, min),
  what the reference tool does.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.distributed as dist

from ezpz.log import get_logger
from ezpz.runtime.history import History

log = get_logger("bench_history")


def naive(metrics: dict[str, float], four: bool) -> None:
    for value in metrics.values():
        ops = [(value, dist.ReduceOp.SUM)]
        if four:
            ops += [(value * value, dist.ReduceOp.SUM), (value, dist.ReduceOp.MAX), (value, dist.ReduceOp.MIN)]
        for number, op in ops:
            t = torch.tensor(number, dtype=torch.float64)
            dist.all_reduce(t, op=op)
            t.item()


def timed(fn, steps: int) -> float:
    dist.barrier()
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    dist.barrier()
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    h = History(jsonl=False, report=False, wandb=False)

    def metrics(i: int) -> dict[str, float]:
        return {f"m{k}": float(i + k + rank) for k in range(n)}

    timed(lambda i: h.update(metrics(i), step=i), 20)  # warm-up
    results = {
        "history": timed(lambda i: h.update(metrics(i), step=i), steps),
        "naive-1": timed(lambda i: naive(metrics(i), False), max(steps // 4, 10)),
        "naive-4": timed(lambda i: naive(metrics(i), True), max(steps // 8, 10)),
    }
    if rank == 0:
        base = results["history"]
        for name, us in results.items():
            log.info(
                "%-8s world=%d metrics=%d: %9.1f µs/update  (%.1fx history)",
                name,
                dist.get_world_size(),
                n,
                us,
                us / base,
            )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
