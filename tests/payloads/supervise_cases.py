"""Rank behaviours for the supervision tests: ``python supervise_cases.py CASE DIR``.

Each rank writes its pid to DIR/<rank>.pid first, so a test can check that no
rank process is left behind.
"""

import os
import sys
import time
from pathlib import Path

case, out = sys.argv[1], Path(sys.argv[2])
rank = int(os.environ["RANK"])
(out / f"{rank}.pid").write_text(str(os.getpid()))


def fail_in_rank_two() -> None:
    """Rank 2 raises after 1 s; the others would sleep for a minute."""
    if rank == 2:
        time.sleep(1)
        raise RuntimeError(f"rank {rank} lost its optimizer state")
    time.sleep(60)


def killed() -> None:
    """Rank 0 dies from SIGKILL; the others would sleep for a minute."""
    if rank == 0:
        time.sleep(0.5)
        os.kill(os.getpid(), 9)
    time.sleep(60)


def flood() -> None:
    """20,000 lines as fast as print goes, never flushed by hand."""
    for i in range(20_000):
        print(f"rank {rank} line {i} " + "x" * 40)


def live() -> None:
    """One line, then a long computation: the line must show before the end."""
    print(f"rank {rank} printed at {time.time():.3f}")
    time.sleep(10)


def blocked_in_collective_for_test() -> None:
    """Stand-in for a hung all_reduce: prints once, then waits for ever."""
    print(f"rank {rank} entering the collective")
    time.sleep(600)


def hostile() -> None:
    """Invalid UTF-8, a 1 MB line without newline (rank 0); a closed stdout (rank 1)."""
    if rank == 0:
        sys.stdout.buffer.write(b"\xff\xfe not utf-8 \x80\n")
        sys.stdout.buffer.write(b"A" * 1_000_000)
        sys.stdout.flush()
    else:
        os.close(1)
        print("stdout closed, stderr still works", file=sys.stderr)


def recorded() -> None:
    """Rank 1 raises inside torch's elastic @record decorator, which writes TORCHELASTIC_ERROR_FILE."""
    from torch.distributed.elastic.multiprocessing.errors import record

    @record
    def train() -> None:
        if rank == 1:
            raise ValueError("loss is NaN at step 7")

    train()


def collateral() -> None:
    """Rank 1 raises after joining the gloo group; rank 0 fails in its all_reduce because rank 1 died."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    if rank == 1:
        raise RuntimeError("rank 1 hit a bad batch")
    dist.all_reduce(torch.ones(1))
    time.sleep(60)


CASES = {
    "collateral": collateral,
    "recorded": recorded,
    "fail": fail_in_rank_two,
    "killed": killed,
    "flood": flood,
    "live": live,
    "hang": blocked_in_collective_for_test,
    "hostile": hostile,
}
CASES[case]()
