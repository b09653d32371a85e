"""Multi-rank checks for ezpz.runtime.dist / ezpz.runtime.wrap, launched by tests/test_dist_multirank.py.

Usage: ``dist_check.py train OUTDIR`` (setup, all_reduce, DDP vs single
process, FSDP sharding and DDP equivalence) or ``dist_check.py meet OUTDIR
TIMEOUT`` (setup and all_reduce only).  Every rank writes ``OUTDIR/rank<R>.json``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

import ezpz
from ezpz.runtime.dist import get_dist_info

STEPS, BATCH, DIM = 5, 8, 16


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()) for _ in range(2))
        self.head = nn.Linear(DIM, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def data(world: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    return torch.randn(world * BATCH, DIM, generator=gen), torch.randn(world * BATCH, 3, generator=gen)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def check_training(rank: int, world: int) -> dict:
    dist = torch.distributed
    torch.manual_seed(1234)
    base = Net()
    x, y = data(world)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)

    ddp = ezpz.wrap_model(copy.deepcopy(base), strategy="auto")
    ddp_losses = train(ddp, x[mine], y[mine])
    ddp_params = flat(list(ddp.module.parameters()))
    gathered = [torch.empty_like(ddp_params) for _ in range(world)]
    dist.all_gather(gathered, ddp_params)
    reference = copy.deepcopy(base)
    train(reference, x, y)
    out = {
        "ddp_type": type(ddp).__name__,
        "ddp_losses": ddp_losses,
        "ddp_rank_spread": max((g - gathered[0]).abs().max().item() for g in gathered),
        "ddp_vs_single": (ddp_params - flat(list(reference.parameters()))).abs().max().item(),
        "ddp_moved": (ddp_params - flat(list(base.parameters()))).abs().max().item(),
    }

    fsdp = ezpz.wrap_model(copy.deepcopy(base), strategy="fsdp")
    shards = {}
    for name, p in fsdp.named_parameters():
        shards[name] = {"local": p.to_local().numel(), "full": p.numel(), "rows": p.shape[0]}
    fsdp_losses = train(fsdp, x[mine], y[mine])
    full = flat([p.full_tensor() for p in fsdp.parameters()])
    out.update(
        fsdp_type=type(fsdp).__name__,
        fsdp_shards=shards,
        fsdp_losses=fsdp_losses,
        fsdp_vs_ddp=(full - ddp_params).abs().max().item(),
    )

    bf16 = ezpz.wrap_model(copy.deepcopy(base), strategy="fsdp", dtype="bf16")
    out.update(
        bf16_out_dtype=str(bf16(x[mine]).dtype),
        bf16_param_dtype=str(next(bf16.parameters()).dtype),
        bf16_losses=train(bf16, x[mine], y[mine]),
    )
    return out


def main() -> int:
    mode, outdir = sys.argv[1], Path(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    before = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK")}
    start = time.perf_counter()
    rank = ezpz.setup_torch(seed=7, timeout=timeout)
    world = ezpz.get_world_size()
    total = torch.tensor([float(rank + 1)])
    torch.distributed.all_reduce(total)
    result = {
        "returned_rank": rank,
        "world_size": world,
        "all_reduce": total.item(),
        "info": get_dist_info(),
        "setup_s": time.perf_counter() - start,
    }
    if mode == "train":
        result.update(check_training(rank, world))
    ezpz.barrier()
    ezpz.cleanup()
    result["env_restored"] = before == {k: os.environ.get(k) for k in before}
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
