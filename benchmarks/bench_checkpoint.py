"""Cost of ``ezpz.checkpoint.save``, blocking and async, against the time of a training step.

The model is the main example's (``ezpz.models.GPT`` with
examples/train_transformer.py's defaults: 4 layers, 4 heads, dim 128,
sequence 128, 32 sequences per rank, AdamW), trained on random tokens.  For
each world size (default 1 and 2; ``python -m ezpz launch -n W``) every
rank times, in rotating order, ``--repeats`` rounds of three windows of
``K`` training steps each:

* **plain**: K steps, no checkpoint (the baseline, measured in the same run);
* **blocking**: K steps with one ``save(..., async_save=False)`` after the first;
* **async**: K steps with one ``save(..., async_save=True)`` after the first,
  and ``ezpz.checkpoint.wait()`` at the end, inside the window.

K is chosen after a warm-up so that the background write fits inside the
window.  Two measures of what a save costs the training loop:

* **loop blocked**: the time the loop waits in checkpoint calls: the whole
  blocking ``save``; for async, the ``save`` call (the copy to CPU memory)
  plus the final ``wait()``.  The async save *hides*
  ``1 - blocked(async) / blocked(blocking)`` of it.  Robust to other load.
* **window cost**: each window minus the plain window of the same round;
  it also counts the background write slowing the steps it overlaps (it
  competes for the same cores), but is as noisy as the machine.

Also reported: one step, the blocking save, the async call until it
returns and until the checkpoint is complete.  Medians over rounds; rank 0
prints a markdown table.

    python benchmarks/bench_checkpoint.py                  # ~2-4 minutes on 2 cores
    python benchmarks/bench_checkpoint.py --worlds 1 2 4 --repeats 7 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 65  # the example's character vocabulary on Shakespeare


def worker(args: argparse.Namespace) -> None:
    """One rank: build the example model, time the three windows, rank 0 writes the figures."""
    import torch

    import ezpz
    from ezpz.models import GPT, GPTConfig

    rank = ezpz.setup_torch(seed=0)
    world = ezpz.get_world_size()
    cfg = GPTConfig(vocab_size=VOCAB, seq_len=args.seq_len, layers=args.layers, heads=args.heads, dim=args.dim)
    model = ezpz.wrap_model(GPT(cfg), strategy=args.strategy)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(rank)
    blocks = torch.randint(0, VOCAB, (8, args.batch_size, args.seq_len + 1), generator=gen)
    directory = Path(args.dir)
    step = 0

    def train_step() -> None:
        nonlocal step
        block = blocks[step % len(blocks)]
        loss = model(block[:, :-1], block[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        step += 1

    def window(steps: int, mode: str) -> dict[str, float]:
        ezpz.barrier()
        start = time.perf_counter()
        out: dict[str, float] = {}
        for i in range(steps):
            train_step()
            if i == 0 and mode != "plain":
                call = time.perf_counter()
                handle = ezpz.checkpoint.save(directory, model, opt, step=step, keep=2, async_save=mode == "async")
                out["call"] = time.perf_counter() - call
        if mode == "async":
            waited = time.perf_counter()
            ezpz.checkpoint.wait()
            out["stall"] = out["call"] + time.perf_counter() - waited
        elif mode == "blocking":
            out["stall"] = out["call"]
        ezpz.barrier()
        out["window"] = time.perf_counter() - start
        if mode != "plain":
            out["complete"] = handle.seconds or 0.0
        return out

    for _ in range(3):  # warm-up: allocator, DDP buckets, the checkpoint process group
        train_step()
    window(2, "blocking")
    window(2, "async")
    one = window(5, "plain")["window"] / 5
    probe = window(2, "blocking")["call"]
    steps = max(args.min_steps, math.ceil(2 * probe / one) + 2)
    modes = ["plain", "blocking", "async"]
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in modes[r % 3 :] + modes[: r % 3]:
            rounds[mode].append(window(steps, mode))
    ezpz.checkpoint.wait()
    if rank == 0:

        def med(mode: str, key: str) -> float:
            return statistics.median(x[key] for x in rounds[mode])

        plain = med("plain", "window")
        # Paired: each round's window minus the plain window of the same round (run next to it).
        cost = {
            m: statistics.median(
                x["window"] - base["window"] for x, base in zip(rounds[m], rounds["plain"], strict=True)
            )
            for m in ("blocking", "async")
        }
        stall = {m: med(m, "stall") for m in ("blocking", "async")}
        size = sum(f.stat().st_size for f in (ezpz.checkpoint.latest(directory) or directory).glob("*"))
        figures = {
            "world": world,
            "params": sum(p.numel() for p in GPT(cfg).parameters()),
            "checkpoint_bytes": size,
            "window_steps": steps,
            "repeats": args.repeats,
            "step_s": plain / steps,
            "blocking_call_s": med("blocking", "call"),
            "async_call_s": med("async", "call"),
            "async_complete_s": med("async", "complete"),
            "stall_blocking_s": stall["blocking"],
            "stall_async_s": stall["async"],
            "hidden_stall": 1 - stall["async"] / stall["blocking"],
            "cost_blocking_s": cost["blocking"],
            "cost_async_s": cost["async"],
        }
        Path(args.figures).write_text(json.dumps(figures))
    ezpz.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-steps", type=int, default=4, help="fewest training steps per timed window")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="sequences per rank per step")
    p.add_argument("--strategy", default="ddp", help="as the example's --strategy (ddp, fsdp, hsdp)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS per rank; >1 on a busy machine makes every parallel copy wait for descheduled threads",
    )
    p.add_argument("--out", type=Path, default=None, help="also write all figures here as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--figures", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    passthrough = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("repeats", "min_steps", "layers", "heads")]
    passthrough += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("dim", "seq_len", "batch_size", "strategy")]
    for world in args.worlds:
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
            figures = Path(tmp) / "figures.json"
            cmd = [sys.executable, "-m", "ezpz", "launch", "-n", str(world), "--", sys.executable, __file__]
            cmd += ["--worker", f"--dir={tmp}/ckpt", f"--figures={figures}", *passthrough]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"benchmark run failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
            results.append(json.loads(figures.read_text()))
    load = os.getloadavg()[0]
    print(f"model: GPT {args.layers} layers, dim {args.dim}, seq {args.seq_len}, batch/rank {args.batch_size}, AdamW")
    print(
        f"load average {load:.1f} on {os.cpu_count()} cores; OMP_NUM_THREADS={args.threads}; "
        f"medians of {args.repeats} rounds"
    )
    print(
        "| ranks | checkpoint | step | blocking save | async: call returns | async: files complete "
        "| loop blocked: blocking / async | async hides | window cost: blocking / async |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['world']} | {r['checkpoint_bytes'] / 2**20:.1f} MiB | {1e3 * r['step_s']:.0f} ms "
            f"| {1e3 * r['blocking_call_s']:.0f} ms ({r['blocking_call_s'] / r['step_s']:.2f} steps) "
            f"| {1e3 * r['async_call_s']:.0f} ms | {1e3 * r['async_complete_s']:.0f} ms "
            f"| {1e3 * r['stall_blocking_s']:.0f} / {1e3 * r['stall_async_s']:.0f} ms "
            f"| {100 * r['hidden_stall']:.0f}% "
            f"| {1e3 * r['cost_blocking_s']:.0f} / {1e3 * r['cost_async_s']:.0f} ms |"
        )
    if args.out:
        args.out.write_text(json.dumps({"load_average": load, "results": results}, indent=2))


if __name__ == "__main__":
    main()
