"""Where a loop of known length is: ``step 12/400``, the elapsed time and an ETA.

:class:`Progress` shows it one of two ways, on rank 0 only:

* ``bar``: a live progress bar from rich, when stdout is a terminal;
* ``lines``: one plain log line every ``every`` steps (and at the first and
  the last step), when it is not (a pipe, a batch job's log file)::

      step 120/400 loss=2.910 lr=2.8e-03 | elapsed 0:12, ETA 0:28

``EZPZ_PROGRESS`` (``bar``, ``lines`` or ``off``) overrides the choice, and
``EZPZ_PROGRESS_EVERY`` the line interval (default: about 20 lines a run).
:class:`ezpz.History` drives one when it is given ``total``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import IO, Any, Literal

from ezpz.errors import HistoryError
from ezpz.log import get_logger

__all__ = ["MODES", "Progress", "format_duration"]

log = get_logger("ezpz.progress")

#: Ways to show progress (``EZPZ_PROGRESS``).
MODES = ("bar", "lines", "off")
Mode = Literal["bar", "lines", "off"]


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:05``, ``1:02:03``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _mode(stream: IO[str]) -> Mode:
    raw = os.environ.get("EZPZ_PROGRESS", "").strip().lower()
    if raw:
        if raw not in MODES:
            raise HistoryError("EZPZ_PROGRESS is not a progress mode", raw, f"valid: {', '.join(MODES)}")
        return raw  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "bar" if callable(isatty) and isatty() else "lines"


def _every(total: int) -> int:
    raw = os.environ.get("EZPZ_PROGRESS_EVERY", "").strip()
    if not raw:
        return max(1, math.ceil(total / 20))
    if not raw.isdigit() or int(raw) < 1:
        raise HistoryError("EZPZ_PROGRESS_EVERY is not a positive whole number", raw, "give a step count, e.g. 10")
    return int(raw)


class Progress:
    """Progress of a loop of ``total`` steps: a rich bar on a terminal, else a plain line every ``every`` steps.

    Args:
        total: the step count at which the loop ends (steps count from 1, or from 0 to ``total - 1``).
        every: steps between plain lines (default ``EZPZ_PROGRESS_EVERY``, else ``ceil(total / 20)``).
        mode: ``bar``, ``lines`` or ``off`` (default ``EZPZ_PROGRESS``, else by whether ``stream`` is a terminal).
        rank: only rank 0 shows anything.
        stream: where the bar is drawn (default ``sys.stdout``); plain lines go through the ``ezpz`` logger.

    Raises:
        HistoryError: a ``total`` below 1, or a malformed ``EZPZ_PROGRESS*`` variable.
    """

    def __init__(
        self,
        total: int,
        *,
        every: int | None = None,
        mode: Mode | None = None,
        rank: int = 0,
        stream: IO[str] | None = None,
    ) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise HistoryError("the total step count must be a positive whole number", repr(total))
        self.total = total
        self.stream = stream or sys.stdout
        self.mode: Mode = "off" if rank != 0 else (mode or _mode(self.stream))
        self.every = every or _every(total)
        self.started = time.monotonic()
        self._first: tuple[float, float] | None = None
        self._pending: tuple[float, str, float] | None = None
        self._bar: Any = None
        self._task: Any = None

    def eta(self, step: float, now: float | None = None) -> float:
        """Seconds left, from the mean step time since the first update (``nan`` before two updates)."""
        now = time.monotonic() if now is None else now
        if self._first is None or step <= self._first[0]:
            return math.nan
        first_step, first_time = self._first
        return (now - first_time) / (step - first_step) * max(0.0, self.total - step)

    def line(self, step: float, text: str = "", now: float | None = None) -> str:
        """The plain line: ``step 12/400 <text> | elapsed 0:12, ETA 3:40``."""
        now = time.monotonic() if now is None else now
        shown = int(step) if float(step).is_integer() else step
        head = f"step {shown}/{self.total}" + (f" {text}" if text else "")
        return f"{head} | elapsed {format_duration(now - self.started)}, ETA {format_duration(self.eta(step, now))}"

    def update(self, step: float, text: str = "") -> None:
        """Record that ``step`` is done; ``text`` (the metrics) goes on the line or beside the bar."""
        now = time.monotonic()
        if self._first is None:
            self._first = (float(step), now)
        self._pending = (step, text, now)
        if self.mode == "lines" and (step == self._first[0] or step >= self.total or int(step) % self.every == 0):
            self._flush()
        elif self.mode == "bar":
            self._draw(step, text)

    def _flush(self) -> None:
        if self._pending is not None:
            log.info("%s", self.line(*self._pending))
            self._pending = None

    def _draw(self, step: float, text: str) -> None:
        if self._bar is None:
            # rich's progress machinery only when a bar is drawn: plain lines and other ranks never load it.
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[text]}"),
                console=Console(file=self.stream),
                auto_refresh=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, text="")
        self._bar.update(self._task, completed=step, text=text, refresh=True)

    def close(self) -> None:
        """Show the last step if its line is still due, and stop the bar (leaving it on screen)."""
        if self.mode == "lines":
            self._flush()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
