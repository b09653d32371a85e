"""A rank that records the signals it receives: ``launch_signals.py DIR [ignore]``.

Writes ``DIR/<rank>.pid``, then sleeps.  SIGTERM and SIGINT are noted in
``DIR/<rank>.<SIGNAME>`` as they arrive; without ``ignore`` the rank then exits
with status 128 + signal, with ``ignore`` it goes on sleeping, so only SIGKILL
ends it.  (It exits rather than dying of the signal: MPICH hydra SIGKILLs the
other ranks as soon as one dies of a signal, before their handlers can run.)
"""

import os
import signal
import sys
import time
from pathlib import Path

out = Path(sys.argv[1])
ignore = sys.argv[2:] == ["ignore"]
rank = os.environ.get("RANK", "0")


def note(signum: int, _frame: object) -> None:
    (out / f"{rank}.{signal.Signals(signum).name}").write_text(str(os.getpid()))
    if not ignore:
        os._exit(128 + signum)


for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, note)
(out / f"{rank}.pid").write_text(str(os.getpid()))
print("ready", flush=True)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    time.sleep(0.1)
