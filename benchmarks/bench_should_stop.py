"""Benchmark ezpz.should_stop() against a training step of the example model.

    python -m ezpz launch -n 2 -- python benchmarks/bench_should_stop.py [STEPS]

Each rank times, in turns (A, B, A, B, … so load from other processes hits
both alike), ``STEPS`` calls of:

* ``step``: one DDP training step of ``examples/train_transformer.py``'s
  default model (4 layers, dim 128, sequence 128, batch 8 per rank): the
  baseline;
* ``should_stop``: ``ezpz.should_stop()`` (one MAX all_reduce of one int);
* ``should_stop/10``: ``ezpz.should_stop(every=10)`` (nine calls in ten
  return at once).

Rank 0 prints the median µs per call and each as a fraction of a step.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch

import ezpz
from ezpz.models import GPT, GPTConfig

log = ezpz.get_logger("bench_should_stop")


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Median-friendly sample: µs per call over ``calls`` calls, ranks aligned first."""
    ezpz.barrier()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    ezpz.barrier()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ezpz.setup_torch(seed=0)
    cfg = GPTConfig(vocab_size=256, seq_len=128, layers=4, heads=4, dim=128)
    model = ezpz.wrap_model(GPT(cfg), strategy="ddp")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    block = torch.randint(0, 256, (8, 129))

    def step() -> None:
        loss = model(block[:, :-1], block[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    sides: dict[str, tuple[Callable[[], object], int]] = {
        "step": (step, 5),
        "should_stop": (ezpz.should_stop, 500),
        "should_stop/10": (lambda: ezpz.should_stop(every=10), 2000),
    }
    for fn, calls in sides.values():  # warm-up, unmeasured
        per_call(fn, max(1, calls // 10))
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, (fn, calls) in sides.items():
            samples[name].append(per_call(fn, calls))
    if ezpz.get_rank() == 0:
        base = statistics.median(samples["step"])
        for name, values in samples.items():
            us = statistics.median(values)
            log.info("%-15s world=%d: %10.1f µs/call  (%.2e of a step)", name, ezpz.get_world_size(), us, us / base)
    ezpz.cleanup()


if __name__ == "__main__":
    main()
