"""Stop at the warning: one flag every rank agrees on in the same step.

A job about to end (walltime) or be preempted gets a warning signal,
``SIGUSR2``, some time before it is stopped: from the scheduler
(``ezpz submit --signal USR2@120``), or from ``ezpz launch``, which forwards
the ``SIGUSR2`` it receives to every rank.  A training loop asks::

    if ezpz.should_stop():      # True on every rank in the same step
        save_checkpoint(...)
        break

Any one rank that received the signal is enough: :func:`should_stop` is a
collective (one ``all_reduce`` of one integer, ``MAX``) so all ranks leave the
loop after the same step and no collective is left unmatched.  Call it at the
same point of the loop on every rank.

Cost: one tiny ``all_reduce`` and a device sync per poll: under 0.2% of a
training step of the example model on 2 CPU ranks with gloo
(``benchmarks/bench_should_stop.py``), a few to tens of microseconds with NCCL.  ``should_stop(every=N)`` polls only every
``N``-th call (the others return ``False`` at no cost); use it when steps are
very short or the loop otherwise never syncs with the device.  The warning
then takes up to ``N`` steps to be acted on.

Signals: the ``SIGUSR2`` handler is installed by :func:`ezpz.setup_torch`
(via :func:`arm`) and by the first :func:`should_stop`, so a warning that
arrives before the loop starts is kept, not fatal.  From the first
:func:`should_stop` on, ``SIGTERM`` is a stop request too (the scheduler's
last word; ``ezpz launch --stop-grace`` bounds how long the ranks then have).
A program that never polls keeps the default ``SIGTERM``.  ``SIGUSR1`` is
never touched: NCCL uses it.

Standard library only until the first poll with more than one rank.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from ezpz.errors import DistError

__all__ = ["WARNING_SIGNAL", "arm", "received", "should_stop"]

#: The signal that warns a run of its end (``SIGUSR1`` belongs to NCCL).
WARNING_SIGNAL = signal.SIGUSR2


class _Flag:
    """What this process received, and what the ranks agreed."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed: set[int] = set()
        self.agreed = False
        self.calls = 0


_FLAG = _Flag()


def _note(signum: int, _frame: FrameType | None) -> None:
    if _FLAG.signum is None:
        _FLAG.signum = signum


def arm(*, sigterm: bool = False) -> None:
    """Install the warning handler (and, with ``sigterm``, the ``SIGTERM`` one); idempotent.

    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (WARNING_SIGNAL, signal.SIGTERM) if sigterm else (WARNING_SIGNAL,):
        if sig not in _FLAG.armed:
            signal.signal(sig, _note)
            _FLAG.armed.add(sig)


def received() -> int | None:
    """The stop signal this process received (``SIGUSR2`` or ``SIGTERM``), or ``None``."""
    return _FLAG.signum


def _any_rank(local: bool) -> bool:
    """Whether ``local`` is true on any rank (one MAX all_reduce; ``local`` without a group)."""
    torch: Any = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return local
    dist = torch.distributed
    if dist.get_world_size() == 1:
        return local
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    elif dist.get_backend() in ("xccl", "ccl"):
        device = torch.device("xpu", torch.xpu.current_device())
    flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def should_stop(every: int = 1) -> bool:
    """Return ``True`` on every rank, in the same call, once any rank got the warning.

    A collective when a process group exists: every rank must call it at
    the same point of its loop, with the same ``every``.  Once true it stays
    true (later calls cost nothing).

    Args:
        every: poll on every ``every``-th call only; the calls between return
            ``False`` without communicating.
    """
    if every < 1:
        raise DistError("should_stop(every=N) needs N ≥ 1", every, "poll every step with should_stop()")
    arm(sigterm=True)
    if _FLAG.agreed:
        return True
    _FLAG.calls += 1
    if _FLAG.calls % every:
        return False
    _FLAG.agreed = _any_rank(_FLAG.signum is not None)
    return _FLAG.agreed
