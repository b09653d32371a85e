r"""Training metrics with cross-rank statistics in one collective per update.

>>> h = History()                         # doctest: +SKIP
>>> line = h.update({"loss": 0.42, "lr": 3e-4}, step=10)
>>> logger.info(line)                     # step=10 loss=0.420(±0.022) lr=3.0e-04
>>> h.finalize()                          # run directory with report.md

How the cross-rank statistics work
    Every rank packs its metrics into one fixed-size float64 vector
    ``[calls, step, n_keys, error, hash(k1), v1, hash(k2), v2, ...]`` and the ranks
    exchange it with a single ``all_gather`` (gloo: on the CPU; NCCL/XCCL: on
    the accelerator).  Each rank then computes mean / std / min / max of every
    metric locally, in float64 with compensated sums, from the exact values
    of all ranks, so ``std`` of ``1e6 + ε`` values is right.  The vector
    length is fixed for the life of the History (it only grows, by doubling,
    in the one update where a rank first reports more metrics than fit; that
    update issues a second all_gather), so ranks with different metric sets
    never issue mismatched collectives: metrics are matched by key hash and
    each statistic counts the ranks that reported it (``n``).

Rules for values (the same on every rank)
    * int, float, bool, numpy scalars and one-element tensors (any device;
      read with one transfer per device) are metrics.
    * Strings, ``None``, lists and multi-element arrays/tensors are skipped,
      with one warning per key.
    * NaN and ±inf are kept: a step's statistic follows IEEE (any NaN makes
      mean/std/min/max NaN; an inf makes std NaN), and the over-steps
      :meth:`History.summary` ignores them and counts them in ``nonfinite``.
    * Keys must match ``[\w][\w.-]*`` (no ``/``, no spaces; ``/`` separates
      statistics in :func:`ezpz.runtime.metrics_io.to_dataframe`); ``time`` is
      reserved and ``step`` may be given as a key instead of the argument.
      A bad key raises :class:`~ezpz.errors.HistoryError` on *every* rank
      after the collective, so no rank is left waiting.
    * ``update`` is a collective: if the ranks' call counts or steps disagree
      (a rank skipped a step) every rank in that collective raises; if a rank never calls, the others raise after ``timeout``
      seconds (gloo; NCCL/XCCL use the process group's own timeout).

Only rank 0 writes files (JSONL, ``meta.json``, report, plots) and logs to
W&B.  Settings: arguments win; ``None`` means "the ``EZPZ_*`` variable, else
the default" (see ``docs/history.md``).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ezpz.errors import HistoryError
from ezpz.log import get_logger
from ezpz.ranks import rank_info
from ezpz.runtime.crossrank import (
    Stat,
    capacity_for,
    check_rows,
    cross_rank_stats,
    grown,
    local_stats,
    pack,
    row_stats,
)
from ezpz.runtime.device import collective_device
from ezpz.runtime.history_input import check_key, env_number, pick, to_floats
from ezpz.runtime.history_wandb import WandbSink
from ezpz.runtime.metrics_io import METRICS_FILE, JsonlWriter
from ezpz.runtime.progress import Progress
from ezpz.runtime.report import META_FILE, MetricTrack, fmt, write_report

__all__ = ["History", "Stat", "cross_rank_stats"]

log = get_logger("ezpz.history")


def _torch_dist() -> ModuleType | None:
    """torch.distributed when it is imported, initialized and the world is > 1."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist if dist.get_world_size() > 1 else None


class History:
    """Metrics of a training run: cross-rank statistics, JSONL, report, plots, W&B.

    Args:
        keys: metric names to track; other keys given to :meth:`update` are
            ignored with one warning.  ``None`` tracks every key.
        outdir: run directory (rank 0 writes into it).  Default:
            ``$EZPZ_HISTORY_DIR`` (else ``outputs/history``) ``/<timestamp>-<pid>``.
        jsonl: write ``metrics.jsonl`` (``True``), not (``False``), or write
            to this path (its directory must exist).  ``None``:
            ``EZPZ_HISTORY_JSONL``, default on.
        report: write ``report.md`` in :meth:`finalize`
            (``EZPZ_HISTORY_REPORT``, default on).
        distributed: compute cross-rank statistics when torch.distributed is
            initialized with more than one rank (``EZPZ_HISTORY_DISTRIBUTED``,
            default on).  Off: every rank keeps its own values, no collective.
        wandb: ``True`` logs to the active W&B run or starts one
            (project ``$EZPZ_WANDB_PROJECT``, default ``ezpz``); ``False``
            never; ``None``: an already active run, else ``EZPZ_WANDB``.
        plot: terminal plots and PNGs in the report (``EZPZ_HISTORY_PLOT``,
            default on).
        max_points: points kept per metric for plots
            (``EZPZ_HISTORY_MAX_POINTS``, default 1024).
        jsonl_max_bytes: rotate the JSONL at this size
            (``EZPZ_HISTORY_JSONL_MAX_BYTES``, default 64 MiB).
        timeout: seconds :meth:`update` waits for the other ranks
            (``EZPZ_HISTORY_TIMEOUT``, default 900).
        total: the step count the run ends at.  Given, rank 0 shows
            ``step 12/400``, the elapsed time and an ETA at each
            :meth:`update` (:class:`ezpz.runtime.progress.Progress`: a rich bar on a
            terminal, a plain line every few steps otherwise).

    Raises:
        HistoryError: on rank 0, when the run directory or JSONL file cannot
            be written, or an ``EZPZ_HISTORY_*`` variable is malformed.
    """

    def __init__(
        self,
        keys: Iterable[str] | None = None,
        *,
        outdir: str | os.PathLike[str] | None = None,
        jsonl: bool | str | os.PathLike[str] | None = None,
        report: bool | None = None,
        distributed: bool | None = None,
        wandb: bool | None = None,
        plot: bool | None = None,
        max_points: int | None = None,
        jsonl_max_bytes: int | None = None,
        timeout: float | None = None,
        total: int | None = None,
    ) -> None:
        self.keys = None if keys is None else list(keys)
        if self.keys is not None:
            for key in self.keys:
                error = check_key(key)
                if error is not None:
                    raise error
        self.report = pick(report, "EZPZ_HISTORY_REPORT", True)
        self.distributed = pick(distributed, "EZPZ_HISTORY_DISTRIBUTED", True)
        self.plot = pick(plot, "EZPZ_HISTORY_PLOT", True)
        self.max_points = int(max_points or env_number("EZPZ_HISTORY_MAX_POINTS", 1024))
        self.timeout = float(timeout or env_number("EZPZ_HISTORY_TIMEOUT", 900.0))
        max_bytes = int(jsonl_max_bytes or env_number("EZPZ_HISTORY_JSONL_MAX_BYTES", 64 * 2**20))
        self.rank = self._rank()
        base = Path(os.environ.get("EZPZ_HISTORY_DIR") or "outputs/history")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = Path(outdir) if outdir is not None else base / f"{stamp}-{os.getpid()}"
        self.tracks: dict[str, MetricTrack] = {}
        self.started = time.time()
        self._calls = 0
        self._capacity = capacity_for(len(self.keys or ()))
        self._hashes: dict[str, float] = {}
        self._warned: set[str] = set()
        self._device: Any = None
        self._writer: JsonlWriter | None = None
        self._meta_written = False
        self._world = 1
        if self.rank == 0:
            self._open_files(jsonl, max_bytes)
        self._wandb = WandbSink.start(wandb, self.run_dir, self._world_size()) if self.rank == 0 else None
        self.progress = Progress(total, rank=self.rank) if total is not None else None
        #: The absolute path of ``report.md`` once :meth:`finalize` wrote it.
        self.report_path: Path | None = None

    # ---------------------------------------------------------------- set-up
    @staticmethod
    def _rank() -> int:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
        return rank_info().rank

    def _open_files(self, jsonl: bool | str | os.PathLike[str] | None, max_bytes: int) -> None:
        """On rank 0: make the run directory when anything goes there, open the JSONL writer."""
        want_jsonl = jsonl if isinstance(jsonl, (str, os.PathLike)) else pick(jsonl, "EZPZ_HISTORY_JSONL", True)
        if want_jsonl or self.report:
            self._make_run_dir()
        if want_jsonl:
            path = Path(want_jsonl) if isinstance(want_jsonl, (str, os.PathLike)) else self.run_dir / METRICS_FILE
            self._writer = JsonlWriter(path, max_bytes)

    def _make_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".ezpz-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise HistoryError(
                "the History output directory is not writable",
                str(self.run_dir),
                f"{exc.strerror or exc}; pass outdir= or set EZPZ_HISTORY_DIR to a writable directory",
            ) from None

    @staticmethod
    def _world_size() -> int:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_world_size())
        return rank_info().world_size

    def _write_meta(self) -> None:
        torch = sys.modules.get("torch")
        meta = {
            "started": self.started,
            "host": socket.gethostname(),
            "world_size": self._world_size(),
            "python": platform.python_version(),
            "ezpz": sys.modules["ezpz"].__version__,
            "torch": getattr(torch, "__version__", None),
            "platform": platform.platform(),
            "cwd": os.getcwd(),
            "argv": sys.argv,
        }
        try:
            (self.run_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        except OSError as exc:
            self._warn_once("meta", "could not write %s: %s", META_FILE, exc)
        self._meta_written = True

    def _warn_once(self, tag: str, message: str, *args: object) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            log.warning(message, *args)

    # ---------------------------------------------------------------- values
    # ---------------------------------------------------------------- collective
    def _exchange(self, dist: ModuleType, step: float, values: dict[str, float], failed: bool) -> list[list[float]]:
        """One all_gather of the packed vectors; returns one row per rank."""
        torch = sys.modules["torch"]
        if self._device is None:
            self._device = collective_device(torch, dist)
        vec = pack(self._calls, step, values, self._hashes, self._capacity, failed)
        width = len(vec)
        world = dist.get_world_size()
        send = torch.tensor(vec, dtype=torch.float64, device=self._device)
        out = torch.empty(world * width, dtype=torch.float64, device=self._device)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        try:
            gather(out, send, async_op=True).wait(timeout=datetime.timedelta(seconds=self.timeout))
        except RuntimeError as exc:
            raise HistoryError(
                "History.update timed out or failed waiting for the other ranks",
                f"rank {self.rank}, update #{self._calls}, timeout {self.timeout:g} s",
                f"call update() on every rank the same number of times (or pass distributed=False); {exc}",
            ) from None
        flat = out.cpu().tolist()
        rows = [flat[r * width : (r + 1) * width] for r in range(world)]
        capacity = grown(rows, self._capacity)
        if capacity is not None:
            self._capacity = capacity
            return self._exchange(dist, step, values, failed)
        return rows

    def _stats(self, values: dict[str, float], rows: list[list[float]]) -> dict[str, Stat]:
        """The statistics of ``values`` over the ranks' rows; warns once when the ranks' metric sets differ."""
        stats, mismatch = row_stats({k: self._hashes[k] for k in values}, rows)
        if mismatch is not None:
            self._warn_once(
                "mismatch",
                "History: ranks report different metric sets; each statistic uses the ranks that "
                "report it (n). Missing here -> ranks: %s; ranks with metrics rank %d lacks: %s",
                mismatch.missing or "none",
                self.rank,
                mismatch.extra or "none",
            )
        return stats

    # ---------------------------------------------------------------- public
    def update(self, metrics: Mapping[str, Any], step: int | float | None = None) -> str:
        """Record one step of metrics; a collective when the world is > 1.

        Every rank must call it, the same number of times.  Returns the
        console line ``step=10 loss=0.047(±0.022) lr=3.0e-04``.

        Raises:
            HistoryError: a bad key (on every rank), ranks out of step, or a
                timeout waiting for the other ranks.
        """
        if not isinstance(metrics, Mapping):
            raise HistoryError("History.update takes a mapping of metric name to value", type(metrics).__name__)
        if "step" in metrics:
            metrics = dict(metrics)
            given = metrics.pop("step")
            if step is None:
                step = given
        step = self._calls if step is None else step
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise HistoryError("step must be a number", repr(step), "pass an int, e.g. step=10")
        values, error = to_floats(metrics, self.keys, self._hashes, self._warn_once)
        dist = _torch_dist() if self.distributed else None
        self._world = 1 if dist is None else dist.get_world_size()
        if dist is not None:
            rows = self._exchange(dist, float(step), values, error is not None)
            self._calls += 1
            check_rows(rows, error)
            stats = self._stats(values, rows)
        else:
            self._calls += 1
            if error is not None:
                raise error
            stats = local_stats(values)
        for key, stat in stats.items():
            if key not in self.tracks:
                self.tracks[key] = MetricTrack(self.max_points)
            self.tracks[key].add(float(step), stat.mean, stat.min, stat.max)
            if not math.isfinite(values[key]):
                self._warn_once(f"nonfinite:{key}", "History: metric %r is %s at step %s", key, values[key], step)
        if self.rank == 0:
            self._emit(step, values, stats)
        line = self._line(step, stats)
        if self.progress is not None:
            self.progress.update(step, line.partition(" ")[2])
        return line

    def _emit(self, step: int | float, values: dict[str, float], stats: dict[str, Stat]) -> None:
        if self._writer is not None:
            if not self._meta_written:
                self._write_meta()
            try:
                self._writer.write(
                    {
                        "step": step,
                        "time": time.time(),
                        "rank": self.rank,
                        "world_size": self._world,
                        "metrics": values,
                        "stats": {k: s.as_dict() for k, s in stats.items()},
                    }
                )
            except OSError as exc:
                log.warning("History: JSONL writing stopped (%s); lines written so far are kept", exc)
                self._writer.close()
                self._writer = None
        if self._wandb is not None and not self._wandb.log(stats, step):
            self._wandb = None

    @staticmethod
    def _line(step: int | float, stats: dict[str, Stat]) -> str:
        parts = [f"step={fmt(step)}"]
        for key, s in stats.items():
            text = f"{key}={fmt(s.mean)}"
            if s.n > 1 and s.std > 0:
                text += f"(±{fmt(s.std)})"
            parts.append(text)
        return " ".join(parts)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per metric: latest / mean / min / max / std of the cross-rank mean over steps.

        Also ``count`` (finite steps) and ``nonfinite`` (NaN/inf steps, left
        out of the statistics).
        """
        return {key: track.summary() for key, track in self.tracks.items()}

    def finalize(self, outdir: str | os.PathLike[str] | None = None) -> Path:
        """Close the JSONL, write ``report.md`` and plots (rank 0), finish W&B; return the run directory.

        ``outdir`` puts the report elsewhere (the JSONL stays where it is).
        Not a collective; calling it twice rewrites the report.
        """
        target = Path(outdir) if outdir is not None else self.run_dir
        if self.progress is not None:
            self.progress.close()
        if self.rank != 0:
            return target
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.report:
            if not self._meta_written and target == self.run_dir and self.run_dir.is_dir():
                self._write_meta()
            meta = None
            meta_path = self.run_dir / META_FILE
            if meta_path.is_file():
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            self.report_path = write_report(target, self.tracks, meta, plot=self.plot).resolve()
        if self._wandb is not None:
            self._wandb.finish()
        self._wandb = None
        return target
