"""Bounded per-metric tracking and the Markdown run report.

:class:`MetricTrack` keeps, for one metric, running statistics over steps
(Welford, float64) and a downsampled series for plots whose length never
exceeds ``max_points``: when it fills up, every other point is dropped and
only every ``stride``-th new point is kept from then on.  Memory per metric is
therefore constant however long the run.

:func:`write_report` turns tracks into ``report.md`` plus terminal plots
(``plots/<metric>.txt``, plotext) and, when matplotlib is installed, PNGs
(``plots/<metric>.png``).  :func:`report_from_jsonl` rebuilds the same report
from a run directory's JSONL alone, e.g. after the run was killed
(``ezpz report RUN_DIR``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ezpz.errors import HistoryError
from ezpz.log import get_logger
from ezpz.runtime.metrics_io import read_jsonl

__all__ = ["META_FILE", "REPORT_FILE", "MetricTrack", "report_from_jsonl", "write_report"]

REPORT_FILE = "report.md"
META_FILE = "meta.json"

log = get_logger("ezpz.report")


class MetricTrack:
    """Running statistics over steps plus a bounded, downsampled series.

    Args:
        max_points: most points kept for plots (at least 2).
    """

    def __init__(self, max_points: int = 1024) -> None:
        self.max_points = max(2, max_points)
        self.count = 0
        self.nonfinite = 0
        self.latest = math.nan
        self.mean = 0.0
        self._m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.points: list[tuple[float, float, float, float]] = []
        self._stride = 1
        self._seen = 0

    def add(self, step: float, mean: float, lo: float | None = None, hi: float | None = None) -> None:
        """Record one step: the cross-rank ``mean`` and, optionally, its ``lo``/``hi`` band."""
        self.latest = mean
        if math.isfinite(mean):
            self.count += 1
            delta = mean - self.mean
            self.mean += delta / self.count
            self._m2 += delta * (mean - self.mean)
            self.min = min(self.min, mean)
            self.max = max(self.max, mean)
        else:
            self.nonfinite += 1
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.points.append((step, mean, mean if lo is None else lo, mean if hi is None else hi))
        if len(self.points) > self.max_points:
            self.points = self.points[::2]
            self._stride *= 2

    def summary(self) -> dict[str, float]:
        """Return latest / mean / min / max / std over steps, and the counts."""
        empty = self.count == 0
        return {
            "latest": self.latest,
            "mean": math.nan if empty else self.mean,
            "min": math.nan if empty else self.min,
            "max": math.nan if empty else self.max,
            "std": math.nan if empty else math.sqrt(self._m2 / self.count),
            "count": self.count,
            "nonfinite": self.nonfinite,
        }


def fmt(value: float) -> str:
    """Format a number compactly: ``0.047``, ``3.0e-04``, ``1234.500``, ``12``."""
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e6):
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3f}" if 1e-2 <= abs(value) < 1e4 else f"{value:.1e}"


def _finite_points(track: MetricTrack) -> list[tuple[float, float, float, float]]:
    """Plottable points: non-finite steps are left out (the overview table counts them)."""
    return [p for p in track.points if all(math.isfinite(v) for v in p)]


def _text_plot(name: str, points: list[tuple[float, float, float, float]], width: int = 72, height: int = 18) -> str:
    # plotext (the report extra) only when a text plot is drawn.
    import importlib

    # plotext builds its public names at import time; type checkers cannot see them.
    plt: Any = importlib.import_module("plotext")

    xs = [p[0] for p in points]
    series = {"mean": [p[1] for p in points]}
    if any(p[2] != p[3] for p in points):
        series["min"] = [p[2] for p in points]
        series["max"] = [p[3] for p in points]
    if hasattr(plt, "clear_figure"):  # plotext 5.x
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("clear")
        plt.title(name)
        for label, ys in series.items():
            plt.plot(xs, ys, label=label if len(series) > 1 else None)
        return plt.uncolorize(plt.build())
    fig = plt.figure  # plotext 6.x
    fig.clear()
    plt.terminal.limit(False, False)
    fig.plot_size(width, height)
    fig.title(name)
    for label, ys in series.items():
        signal = fig.signal(xs, ys).lines()
        fig.draw(signal.label(label) if len(series) > 1 else signal)
    return fig.build().string(colorless=True)


def _png_plot(name: str, points: list[tuple[float, float, float, float]], path: Path) -> None:
    # matplotlib (the report extra) only when a PNG is written.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    xs = [p[0] for p in points]
    if any(p[2] != p[3] for p in points):
        ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.25, label="min–max over ranks")
    ax.plot(xs, [p[1] for p in points], label="mean")
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.legend(loc="best")
    fig.savefig(path, dpi=100)


def _environment_rows(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key in ("started", "host", "world_size", "python", "ezpz", "torch", "platform", "cwd", "argv"):
        if key in meta and meta[key] is not None:
            value = meta[key]
            if key == "started" and isinstance(value, (int, float)):
                value = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(value))
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            rows.append((key, str(value).replace("|", "\\|")))
    return rows


def write_report(
    outdir: str | os.PathLike[str],
    tracks: Mapping[str, MetricTrack],
    meta: Mapping[str, Any] | None = None,
    *,
    plot: bool = True,
) -> Path:
    """Write ``report.md`` and the plots for ``tracks`` into ``outdir``; return its path.

    Text plots need plotext (``ezpz[plot]``) and PNGs need matplotlib; either
    missing only leaves its plots out.
    """
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError("cannot create the report directory", str(out), exc.strerror or str(exc)) from None
    have_plotext = plot and importlib.util.find_spec("plotext") is not None
    have_mpl = plot and importlib.util.find_spec("matplotlib") is not None
    if plot and tracks and (have_plotext or have_mpl):
        (out / "plots").mkdir(exist_ok=True)
    lines = ["# Run report", "", *_environment_section(meta or {}), *_metrics_table(tracks)]
    for name, track in tracks.items():
        lines += [f"## {name}", "", *_plots(name, _finite_points(track), out / "plots", have_mpl, have_plotext)]
    report = out / REPORT_FILE
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _environment_section(meta: Mapping[str, Any]) -> list[str]:
    """The report's environment table (nothing when ``meta`` has none of its keys)."""
    env_rows = _environment_rows(meta)
    if not env_rows:
        return []
    return ["## Environment", "", "| | |", "|---|---|", *(f"| {k} | `{v}` |" for k, v in env_rows), ""]


def _metrics_table(tracks: Mapping[str, MetricTrack]) -> list[str]:
    """The report's metrics section: one row of summary statistics per metric."""
    lines = ["## Metrics", ""]
    if not tracks:
        return [*lines, "No metrics were recorded.", ""]
    lines += [
        "| metric | latest | mean | min | max | std | steps | non-finite |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, track in tracks.items():
        s = track.summary()
        cells = [fmt(s[k]) for k in ("latest", "mean", "min", "max", "std")]
        lines.append(f"| {name} | {' | '.join(cells)} | {s['count']} | {s['nonfinite']} |")
    return [*lines, ""]


def _plots(name: str, points: list[tuple[float, float, float, float]], plots: Path, png: bool, text: bool) -> list[str]:
    """Write the PNG and text plots of one metric into ``plots``; the report lines that show them."""
    lines: list[str] = []
    if png and points:
        _png_plot(name, points, plots / f"{name}.png")
        lines += [f"![{name}](plots/{name}.png)", ""]
    if text and points:
        drawn = _text_plot(name, points)
        (plots / f"{name}.txt").write_text(drawn + "\n", encoding="utf-8")
        lines += ["```text", drawn.rstrip("\n"), "```", ""]
    return lines


def tracks_from_records(records: Iterable[Mapping[str, Any]], max_points: int = 1024) -> dict[str, MetricTrack]:
    """Rebuild :class:`MetricTrack` objects from History JSONL records."""
    tracks: dict[str, MetricTrack] = {}
    for record in records:
        step = record.get("step")
        if step is None:
            continue
        stats = record.get("stats") or {}
        for key, stat in stats.items():
            track = tracks.setdefault(key, MetricTrack(max_points))
            track.add(step, float(stat["mean"]), float(stat["min"]), float(stat["max"]))
        for key, value in (record.get("metrics") or {}).items():
            if key not in stats:
                tracks.setdefault(key, MetricTrack(max_points)).add(step, float(value))
    return tracks


def report_from_jsonl(
    run_dir: str | os.PathLike[str], outdir: str | os.PathLike[str] | None = None, *, plot: bool = True
) -> Path:
    """Rebuild ``report.md`` (and plots) from a run directory's JSONL; return the report path.

    Works on a run that was killed: every complete line counts.  The
    environment section comes from ``meta.json`` when present.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise HistoryError("run directory does not exist", str(run), "pass the directory holding metrics.jsonl")
    meta: dict[str, Any] = {}
    if (run / META_FILE).is_file():
        try:
            meta = json.loads((run / META_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("ignoring unreadable %s", run / META_FILE)
    return write_report(outdir or run, tracks_from_records(read_jsonl(run)), meta, plot=plot)
