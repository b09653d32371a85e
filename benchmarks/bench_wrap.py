"""Training-step throughput through ``ezpz.wrap_model`` against hand-written DDP.

Run under any launcher (the figures in docs/runtime.md come from this):

    python -m ezpz launch -n 2 -- python benchmarks/bench_wrap.py [--steps 10] [--repeats 21]

Every rank builds the same MLP twice: once wrapped by hand
(``DistributedDataParallel(model)`` after ``init_process_group``, the step a
user would write) and once by ``ezpz.wrap_model(model)`` (strategy ``auto``,
which picks DDP here).  The two are timed in alternation inside the same
processes, ``--repeats`` rounds of ``--steps`` steps each (the order
reversed every other round), so load from
elsewhere on the machine hits both alike; each figure is the best round.
A second hand-written DDP copy is timed as a control: its ratio to the first
is the noise floor of the machine.  FSDP2 through
``wrap_model(strategy="fsdp")`` is timed too, for information.
Rank 0 prints a markdown table: steps/s (wall) of each and the ratio of ezpz
to the mean of the two hand-written copies (target >= 0.97), and rank 0's process CPU time per step, which other
load on a shared machine disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import ezpz


def make_model(dim: int, layers: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(layers)], nn.Linear(dim, 1))


def time_steps(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int
) -> tuple[float, float]:
    """Wall and process-CPU seconds for ``steps`` training steps, ranks synchronised at both ends."""
    torch.distributed.barrier()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    torch.distributed.barrier()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", help="also write the figures here (rank 0)")
    args = p.parse_args()

    rank = ezpz.setup_torch(seed=1)
    world = ezpz.get_world_size()
    base = make_model(args.dim, args.layers)
    variants = {
        "hand DDP": DistributedDataParallel(copy.deepcopy(base)),
        "ezpz wrap_model": ezpz.wrap_model(copy.deepcopy(base)),
        "hand DDP (control)": DistributedDataParallel(copy.deepcopy(base)),
        "ezpz FSDP2": ezpz.wrap_model(copy.deepcopy(base), strategy="fsdp"),
    }
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in variants.items()}
    x, y = torch.randn(args.batch, args.dim), torch.randn(args.batch, 1)
    for name, model in variants.items():  # warm-up: allocator, reducer buckets, FSDP lazy init
        time_steps(model, opts[name], x, y, 3)
    best = dict.fromkeys(variants, float("inf"))
    best_cpu = dict.fromkeys(variants, float("inf"))
    names = list(variants)
    for round_ in range(args.repeats):
        # Alternate the order so neither variant always runs right after the other.
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, cpu = time_steps(variants[name], opts[name], x, y, args.steps)
            best[name], best_cpu[name] = min(best[name], wall), min(best_cpu[name], cpu)
    rate = {name: args.steps / seconds for name, seconds in best.items()}
    cpu_ms = {name: 1e3 * seconds / args.steps for name, seconds in best_cpu.items()}
    hand = (rate["hand DDP"] + rate["hand DDP (control)"]) / 2
    ratio = rate["ezpz wrap_model"] / hand
    if rank == 0:
        params = sum(p.numel() for p in base.parameters())
        print(
            f"world={world} params={params} batch/rank={args.batch} steps={args.steps} "
            f"repeats={args.repeats} (best round)"
        )
        print("| variant | steps/s (wall) | vs hand DDP | CPU ms/step (rank 0) | vs hand DDP |")
        print("|---|---|---|---|---|")
        for name, value in rate.items():
            print(
                f"| {name} | {value:.1f} | {value / rate['hand DDP']:.3f} | {cpu_ms[name]:.1f} "
                f"| {cpu_ms['hand DDP'] / cpu_ms[name]:.3f} |"
            )
        print(
            f"ratio ezpz/hand = {ratio:.3f} against the mean of both hand-written copies "
            f"(target >= 0.97); control/hand = {rate['hand DDP (control)'] / rate['hand DDP']:.3f} "
            "is this machine's noise floor"
        )
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"world": world, "steps_per_s": rate, "cpu_ms_per_step": cpu_ms, "ratio": ratio}, fh)
    ezpz.cleanup()


if __name__ == "__main__":
    main()
