"""Throughput and learning of examples/train_transformer.py against a hand-written DDP loop.

For each world size (default 1, 2, 4) both programs train the same model on
the same packed Shakespeare blocks for the same steps, launched the same way
(``python -m ezpz launch -n W``), with ``OMP_NUM_THREADS = cores // W``.
Runs alternate between the two programs; each figure is the best of
``--repeats`` runs (the least disturbed by other load on the machine).
Prints a markdown table: steady-state tokens/s of each, their ratio (target
>= 0.97), and the loss after ``--max-steps`` against the unigram entropy.

    python benchmarks/bench_train.py                    # ~3-5 minutes on 2 cores
    python benchmarks/bench_train.py --worlds 1 2 --repeats 3 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The example's default model (0.8 M parameters), given explicitly to both programs.
MODEL = ["--layers", "4", "--heads", "4", "--dim", "128", "--seq-len", "128", "--batch-size", "32", "--lr", "3e-3"]


def run(world: int, program: list[str], summary: Path, workdir: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // world)),
        "EZPZ_HISTORY_PLOT": "0",
        "EZPZ_HISTORY_DIR": str(workdir / "history"),
        "WANDB_MODE": "disabled",
        "NO_COLOR": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "ezpz",
        "launch",
        "-n",
        str(world),
        "--",
        sys.executable,
        *program,
        "--summary",
        str(summary),
    ]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark run failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return json.loads(summary.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args()

    from ezpz.data import prepare_text

    workdir = Path(tempfile.mkdtemp(prefix="ezpz-bench-"))
    cache = args.cache_dir or workdir / "cache"
    entry = prepare_text(seq_len=128, cache_dir=cache).path
    steps = ["--max-steps", str(args.max_steps)]
    programs = {
        "ezpz": [
            str(ROOT / "examples" / "train_transformer.py"),
            *MODEL,
            *steps,
            "--cache-dir",
            str(cache),
            "--sample-tokens",
            "1",
            "--eval-batches",
            "1",
        ],
        "ddp": [str(ROOT / "benchmarks" / "ddp_baseline.py"), *MODEL, *steps, "--entry", str(entry)],
    }
    rows = []
    for world in args.worlds:
        best: dict[str, dict[str, float]] = {}
        for repeat in range(args.repeats):
            order = ["ddp", "ezpz"] if repeat % 2 == 0 else ["ezpz", "ddp"]
            for name in order:
                result = run(world, programs[name], workdir / f"{name}-{world}-{repeat}.json", workdir)
                if name not in best or result["tokens_per_s"] > best[name]["tokens_per_s"]:
                    best[name] = result
        row = {
            "world_size": world,
            "ezpz_tokens_per_s": best["ezpz"]["tokens_per_s"],
            "ddp_tokens_per_s": best["ddp"]["tokens_per_s"],
            "ratio": best["ezpz"]["tokens_per_s"] / best["ddp"]["tokens_per_s"],
            "ezpz_loss": best["ezpz"]["final_loss"],
            "ddp_loss": best["ddp"]["final_loss"],
            "unigram_entropy": best["ezpz"]["unigram_entropy"],
        }
        rows.append(row)
        print(f"world {world}: {row}", file=sys.stderr)
    print(
        f"| ranks | ezpz tokens/s | DDP loop tokens/s | ratio | loss after {args.max_steps} steps "
        "(ezpz / DDP) | unigram entropy |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['world_size']} | {r['ezpz_tokens_per_s']:.0f} | {r['ddp_tokens_per_s']:.0f} | "
            f"{r['ratio']:.3f} | {r['ezpz_loss']:.3f} / {r['ddp_loss']:.3f} | {r['unigram_entropy']:.3f} |"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
