"""Hand-written DDP loop: the yardstick for examples/train_transformer.py.

The same model (ezpz.models.GPT), the same packed data (the cache entry the
example built, read with datasets.load_from_disk), the same optimizer and
learning-rate schedule, plain torch.distributed + DDP + DistributedSampler,
no ezpz runtime helpers, no History, one summary at the end.  Run it under
any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from itertools import pairwise
from pathlib import Path

import datasets
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ezpz.models import GPT, GPTConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--entry", type=Path, required=True, help="cache entry written by ezpz.data.prepare_text")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--summary", type=Path, required=True)
    args = p.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    meta = json.loads((args.entry / "meta.json").read_text())
    train = datasets.load_from_disk(str(args.entry / "blocks"))["train"].with_format("torch")
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    vocab = len(meta["tokenizer"]["chars"]) if meta["tokenizer"]["kind"] == "char" else 256
    model = GPT(GPTConfig(vocab_size=vocab, seq_len=args.seq_len, layers=args.layers, heads=args.heads, dim=args.dim))
    if world > 1:
        model = DDP(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, args.max_steps // 10)

    def lr_at(step: int) -> float:
        if step <= warmup:
            return args.lr * step / warmup
        progress = (step - warmup) / max(1, args.max_steps - warmup)
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    warm_steps = min(3, args.max_steps - 1)
    step, epoch, losses = 0, 0, []
    stamps: list[float] = []
    while step < args.max_steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            step += 1
            block = batch["input_ids"]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss = model(block[:, :-1], block[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            stamps.append(time.perf_counter())
            if step == args.max_steps:
                break
        epoch += 1
    intervals = [b - a for a, b in pairwise(stamps)][max(0, warm_steps - 1) :]
    tokens_per_s = args.batch_size * args.seq_len * world / statistics.median(intervals)
    final = torch.tensor([sum(losses[-5:]) / len(losses[-5:])], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(final)
        dist.destroy_process_group()
    if rank == 0:
        args.summary.write_text(
            json.dumps(
                {
                    "world_size": world,
                    "steps": args.max_steps,
                    "tokens_per_s": tokens_per_s,
                    "final_loss": final.item() / world,
                    "unigram_entropy": meta["unigram_entropy"],
                }
            )
        )


if __name__ == "__main__":
    main()
