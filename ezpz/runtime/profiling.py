"""Opt-in step profiler: the torch profiler or pyinstrument around a few training steps.

A *step* runs from one training-mode forward of the model to the next
(forward, backward and optimizer step), so attaching needs no change to the
training loop::

    model = ezpz.wrap_model(model, profile="torch")          # or "pyinstrument"

:func:`attach_step_profiler` registers a forward pre-hook on the model.  It
skips ``wait`` steps, warms up for ``warmup`` steps, records ``active``
steps, writes one file per rank under ``outdir`` and removes itself:

* ``torch``: ``trace-rank<R>.json`` (Chrome trace; open in Perfetto);
* ``pyinstrument``: ``pyinstrument-rank<R>.html`` (needs ``ezpz[profile]``).

Forwards in eval mode (``model.eval()``) do not count as steps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import DistError, closest
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.runtime.dist import get_rank

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PROFILERS", "StepProfiler", "attach_step_profiler"]

log = get_logger("ezpz.profiling")

PROFILERS = ("torch", "pyinstrument")


class StepProfiler:
    """Profile steps ``wait + warmup`` to ``wait + warmup + active`` of a loop.

    Call :meth:`step` at the start of every step (the hook does it); the
    output is written when the active window ends, or by :meth:`stop`.
    """

    def __init__(
        self, kind: str, outdir: str | os.PathLike[str], rank: int, wait: int = 1, warmup: int = 1, active: int = 3
    ) -> None:
        if kind not in PROFILERS:
            raise DistError("unknown profiler", kind, closest(kind, PROFILERS))
        if wait < 0 or warmup < 0 or active < 1:
            raise DistError(
                "profiler window must have active >= 1 and wait, warmup >= 0",
                f"wait={wait} warmup={warmup} active={active}",
            )
        self.kind = kind
        self.outdir = Path(outdir)
        self.rank = rank
        self.wait, self.warmup, self.active = wait, warmup, active
        self.steps = 0
        self.output: Path | None = None
        self._backend: Any = None
        if kind == "pyinstrument":
            require("pyinstrument", "profile")
        else:
            torch = require("torch", "torch")
            schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
            self._backend = torch.profiler.profile(schedule=schedule, on_trace_ready=self._write_torch)

    @property
    def done(self) -> bool:
        """Whether the output has been written."""
        return self.output is not None

    def _write_torch(self, prof: Any) -> None:
        self.outdir.mkdir(parents=True, exist_ok=True)
        path = self.outdir / f"trace-rank{self.rank}.json"
        prof.export_chrome_trace(str(path))
        self.output = path

    def step(self) -> None:
        """Mark the start of a step."""
        if self.done:
            return
        start, end = self.wait + self.warmup, self.wait + self.warmup + self.active
        if self.kind == "torch":
            if self.steps == 0:
                self._backend.start()
            else:
                self._backend.step()
            if self.steps == end:
                self._backend.stop()
        else:
            if self.steps == start:
                # pyinstrument only when this profiler is used (the profile extra).
                from pyinstrument import Profiler

                self._backend = Profiler()
                self._backend.start()
            elif self.steps == end:
                self._finish_pyinstrument()
        self.steps += 1

    def _finish_pyinstrument(self) -> None:
        self._backend.stop()
        self.outdir.mkdir(parents=True, exist_ok=True)
        path = self.outdir / f"pyinstrument-rank{self.rank}.html"
        path.write_text(self._backend.output_html())
        self.output = path

    def stop(self) -> None:
        """Write what was recorded so far (a loop shorter than the window)."""
        if self.done or self._backend is None:
            return
        if self.kind == "torch":
            if self.steps > 0:
                self._backend.stop()
        elif self.steps > self.wait + self.warmup:
            self._finish_pyinstrument()


def attach_step_profiler(
    model: nn.Module,
    kind: str = "torch",
    outdir: str | os.PathLike[str] = "ezpz-profiles",
    wait: int = 1,
    warmup: int = 1,
    active: int = 3,
) -> StepProfiler:
    """Profile a window of training steps of ``model``; return the profiler.

    The hook detaches itself once the output is written; the path is logged
    and kept in ``profiler.output``.
    """
    profiler = StepProfiler(kind, outdir, get_rank(), wait=wait, warmup=warmup, active=active)

    def hook(module: nn.Module, args: Any) -> None:
        if not module.training:
            return
        profiler.step()
        if profiler.done:
            handle.remove()
            log.info("profiler: wrote %s", profiler.output)

    handle = model.register_forward_pre_hook(hook)
    model.ezpz_profiler = profiler  # type: ignore[assignment]
    return profiler
