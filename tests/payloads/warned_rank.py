"""A rank that waits for the warning: ``warned_rank.py DIR MODE``.

Writes ``DIR/rank-<RANK>.pid`` once its handlers are in place, then:

* ``usr2``: waits for SIGUSR2, writes ``DIR/warned-<RANK>`` and exits 0;
* ``term``: on SIGTERM sleeps ``EZPZ_TEST_SAVE_S`` seconds (a slow save),
  writes ``DIR/saved-<RANK>`` and exits 0;
* ``stubborn``: ignores SIGTERM and sleeps on.

Standard library only.
"""

import os
import signal
import sys
import time
from pathlib import Path

out, mode = Path(sys.argv[1]), sys.argv[2]
rank = os.environ["RANK"]
got: list[int] = []


def on_term(_sig, _frame):
    time.sleep(float(os.environ.get("EZPZ_TEST_SAVE_S", "0")))
    (out / f"saved-{rank}").write_text("saved")
    sys.exit(0)


signal.signal(signal.SIGUSR2, lambda sig, _frame: got.append(sig))
if mode == "term":
    signal.signal(signal.SIGTERM, on_term)
elif mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(out / f"rank-{rank}.pid").write_text(str(os.getpid()))
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    if mode == "usr2" and got:
        (out / f"warned-{rank}").write_text(str(got))
        sys.exit(0)
    time.sleep(0.05)
sys.exit(3)
