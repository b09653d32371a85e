"""``ezpz report RUN_DIR``: rebuild a History's report.md (and plots) from its JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "report_command"]


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding metrics.jsonl.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report here instead of RUN_DIR.")] = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Terminal plots and PNGs.")] = True,
) -> None:
    """Rebuild report.md from RUN_DIR's metrics JSONL (works on killed runs too)."""
    from ezpz.runtime.report import report_from_jsonl

    typer.echo(str(report_from_jsonl(run_dir, out, plot=plot)))


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(report_command)
