"""Ranks that step until :func:`ezpz.should_stop`: ``stop_agree.py DIR``.

Each step is one gloo all_reduce.  Each rank writes ``DIR/rank-<RANK>.pid``
after its first step, and on stopping prints one JSON line: its rank and
the step it stopped at.  Exits 3 if no warning came within 200 steps
after the pid files (about a minute).
"""

import json
import sys
import time
from pathlib import Path

import torch

import ezpz

out = Path(sys.argv[1])
rank = ezpz.setup_torch()
step = 0
while True:
    step += 1
    t = torch.ones(1)
    torch.distributed.all_reduce(t)
    if step == 1:
        (out / f"rank-{rank}.pid").write_text(str(__import__("os").getpid()))
    if ezpz.should_stop():
        print(json.dumps({"rank": rank, "step": step}), flush=True)
        break
    if step > 2000:
        sys.exit(3)
    time.sleep(0.03)
ezpz.cleanup()
