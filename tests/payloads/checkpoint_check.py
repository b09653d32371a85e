"""Multi-rank checks for ezpz.checkpoint and HSDP, launched by tests/test_checkpoint_multirank.py.

Usage: ``checkpoint_check.py MODE OUTDIR``; every rank writes ``OUTDIR/rank<R>.json``.

* ``roundtrip``: DDP (blocking save) and FSDP (async save) each save, train on,
  load, and train again: parameters, optimizer state, RNG and the losses after
  the load must equal those after the save.  Also: an unwritable directory,
  a checkpoint only rank 0 can see, keep=2 pruning.  Rank 0 writes the reference parameters for loads at world 1.
* ``hsdp``: HSDP on a 2-D mesh against DDP from the same start, then a
  save/load round trip.
* ``killed``: a complete blocking save at step 1, then an async save at step
  2 whose write is held open (a slow filesystem, so that the test's SIGKILL
  lands mid-write every time); the ranks write ``OUTDIR/writing-rank<R>``
  with their pid and wait to be killed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

import ezpz
from ezpz.errors import CheckpointError, DistError

DIM, BATCH = 16, 8


class Net(nn.Module):
    """Two blocks and a head: small enough for 4 ranks on 2 cores."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()) for _ in range(2))
        self.head = nn.Linear(DIM, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def base_model() -> Net:
    torch.manual_seed(1234)
    return Net()


def batch(world: int, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x, y = torch.randn(world * BATCH, DIM, generator=gen), torch.randn(world * BATCH, 4, generator=gen)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    return x[mine], y[mine]


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> list[float]:
    rank, world = ezpz.get_rank(), ezpz.get_world_size()
    losses = []
    for step in steps:
        x, y = batch(world, rank, step)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def full(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, gathered (DTensor) or as is, on CPU."""
    out = {}
    for name, param in model.named_parameters():
        value = param.full_tensor() if hasattr(param, "full_tensor") else param
        out[name.removeprefix("module.")] = value.detach().clone()
    return out


def optim_moments(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = []
    for state in opt.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            value = state[key]
            out.append((value.full_tensor() if hasattr(value, "full_tensor") else value).detach().clone())
    return out


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max((a[k] - b[k]).abs().max().item() for k in a)


def round_trip(model: nn.Module, directory: Path, async_save: bool) -> dict:
    """Train 3 steps, save at step 2, train 2 more, load, train the same 2 again."""
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    train(model, opt, range(3))
    handle = ezpz.checkpoint.save(directory, model, opt, step=2, extra={"seen": 3}, async_save=async_save)
    was_pending = not handle.done() if async_save else None
    saved, moments = full(model), optim_moments(opt)
    draw = torch.rand(4).tolist()
    after_save = train(model, opt, range(3, 5))
    handle.wait()
    moved = max_diff(full(model), saved)
    loaded = ezpz.checkpoint.load_latest(directory, model, opt)
    assert loaded is not None
    redraw = torch.rand(4).tolist()
    back = max_diff(full(model), saved)
    moments_back = max((a - b).abs().max().item() for a, b in zip(optim_moments(opt), moments, strict=True))
    after_load = train(model, opt, range(3, 5))
    return {
        "type": type(model).__name__,
        "was_pending": was_pending,
        "moved": moved,
        "back": back,
        "moments_back": moments_back,
        "rng_same": draw == redraw,
        "losses_after_save": after_save,
        "losses_after_load": after_load,
        "loaded_step": loaded.step,
        "loaded_extra": loaded.extra,
        "saved_world": loaded.world_size,
        "listing": [p.name for p in directory.iterdir()],
        "saved": saved,
    }


def check_roundtrip(out: Path, rank: int) -> dict:
    result: dict = {}
    ddp = round_trip(ezpz.wrap_model(base_model(), strategy="ddp"), out / "ddp", async_save=False)
    fsdp = round_trip(ezpz.wrap_model(base_model(), strategy="fsdp"), out / "fsdp", async_save=True)
    if rank == 0:
        torch.save({"ddp": ddp["saved"], "fsdp": fsdp["saved"]}, out / "reference.pt")
    result["ddp"] = {k: v for k, v in ddp.items() if k != "saved"}
    result["fsdp"] = {k: v for k, v in fsdp.items() if k != "saved"}
    blocker = out / "a-file"
    if rank == 0:
        blocker.write_text("not a directory\n")
    ezpz.barrier()
    model = ezpz.wrap_model(base_model(), strategy="ddp")
    try:
        ezpz.checkpoint.save(blocker / "ckpt", model, step=0)
        result["unwritable"] = None
    except CheckpointError as exc:
        result["unwritable"] = exc.line()
    seen = out / "ddp" / "step-00000002" if rank == 0 else out / "not-on-this-node"
    try:  # one rank cannot see the checkpoint: every rank raises, none hangs in the collective read
        ezpz.checkpoint.load(seen, model)
        result["split_view"] = None
    except CheckpointError as exc:
        result["split_view"] = exc.line()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (4, 5, 6):
        train(model, opt, range(step, step + 1))
        ezpz.checkpoint.save(out / "keep", model, opt, step=step, keep=2, async_save=True)
    ezpz.checkpoint.wait()
    result["kept"] = sorted(p.name for p in (out / "keep").iterdir())
    return result


def check_hsdp(out: Path, rank: int) -> dict:
    world = ezpz.get_world_size()
    try:
        ezpz.wrap_model(base_model(), strategy="hsdp", shard_size=3)
        bad = None
    except DistError as exc:
        bad = exc.line()
    ddp = ezpz.wrap_model(base_model(), strategy="ddp")
    ddp_losses = train(ddp, torch.optim.AdamW(ddp.parameters(), lr=0.05), range(4))
    hsdp = ezpz.wrap_model(base_model(), strategy="hsdp")
    param = next(iter(hsdp.parameters()))
    mesh = param.device_mesh
    shards = {name: p.to_local().numel() for name, p in hsdp.named_parameters()}
    local_sum = sum(p.to_local().sum().item() for p in hsdp.parameters())
    hsdp_losses = train(hsdp, torch.optim.AdamW(hsdp.parameters(), lr=0.05), range(4))
    vs_ddp = max_diff(full(hsdp), full(ddp))
    trip = round_trip(hsdp, out / "hsdp", async_save=True)
    trip.pop("saved")
    return {
        "world": world,
        "bad_shard_size": bad,
        "mesh_shape": list(mesh.shape),
        "mesh_dims": list(mesh.mesh_dim_names or ()),
        "placements": [str(p) for p in param.placements],
        "shards": shards,
        "local_sum": local_sum,
        "full_sizes": {name: p.numel() for name, p in hsdp.named_parameters()},
        "hsdp_vs_ddp": vs_ddp,
        "ddp_losses": ddp_losses,
        "hsdp_losses": hsdp_losses,
        "round_trip": trip,
    }


def check_killed(out: Path, rank: int) -> None:
    import os

    import torch.distributed.checkpoint as dcp

    model = ezpz.wrap_model(base_model(), strategy="ddp")
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    train(model, opt, range(2))
    ezpz.checkpoint.save(out / "ckpt", model, opt, step=1)
    if rank == 0:
        torch.save(full(model), out / "reference.pt")
    write_data = dcp.FileSystemWriter.write_data

    def held_open(self, plan, planner):  # a slow filesystem: the shard is written, the save never completes
        written = write_data(self, plan, planner)
        (out / f"writing-rank{rank}").write_text(str(os.getpid()))
        time.sleep(600)
        return written

    dcp.FileSystemWriter.write_data = held_open
    train(model, opt, range(2, 3))
    ezpz.checkpoint.save(out / "ckpt", model, opt, step=2, async_save=True)
    time.sleep(600)


def main() -> int:
    mode, out = sys.argv[1], Path(sys.argv[2])
    rank = ezpz.setup_torch(seed=7)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "killed":
        check_killed(out, rank)
        return 1
    result = check_roundtrip(out, rank) if mode == "roundtrip" else check_hsdp(out, rank)
    ezpz.barrier()
    ezpz.cleanup()
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
