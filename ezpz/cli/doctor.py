"""``ezpz doctor``: check MPI, scheduler, devices, W&B, plugins and the spec before a launch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["doctor_command", "register"]


def doctor_command(
    deep: Annotated[bool, typer.Option(help="Also run a 2-rank MPI probe.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    template: Annotated[
        str | None, typer.Option("-t", "--template", help="Check that this template fits the job.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("-c", "--config", help="Check that this config file fits the job.")
    ] = None,
    np: Annotated[int | None, typer.Option("-n", "--np", help="Total ranks to check.")] = None,
    ppn: Annotated[int | None, typer.Option("-ppn", "--ppn", help="Ranks per host to check.")] = None,
    nhosts: Annotated[int | None, typer.Option("-nh", "--nhosts", help="Hosts to check.")] = None,
    launcher: Annotated[
        str | None,
        typer.Option("--launcher", help="Check the launcher this MPI dialect runs (pals, hydra, openmpi, srun)."),
    ] = None,
) -> None:
    """Check this machine's launch prerequisites; exit 1 when any check is an error."""
    from ezpz.doctor.report import exit_code, render_table, results_json, run_checks
    from ezpz.launch.layers import build_layers
    from ezpz.model.checks import DoctorContext

    layers = build_layers({"template": template, "np": np, "ppn": ppn, "nhosts": nhosts, "launcher": launcher}, config)
    results = run_checks(DoctorContext(environ=dict(os.environ), deep=deep, layers=layers))
    if as_json:
        typer.echo(results_json(results))
    else:
        from rich.console import Console

        Console().print(render_table(results))
    raise typer.Exit(exit_code(results))


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor")(doctor_command)
