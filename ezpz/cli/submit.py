"""``ezpz submit``: write a PBS or Slurm batch script around ``ezpz launch``, and submit it.

``ezpz submit`` takes every option of ``ezpz launch`` (they are repeated on
the ``ezpz launch`` line inside the script) plus the batch request::

    ezpz submit -t aurora --nodes 2 --time 01:00:00 --queue debug --account PROJ -- python train.py

Arguments are split as for ``ezpz launch``: after ``--`` nothing is ezpz's.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from ezpz.cli.args import PASS_OPTION, looks_like_ours
from ezpz.cli.launch import FLAGS_KEY, LaunchCommand, ezpz_options, launch, launch_layers

__all__ = ["register"]

# Launch's own output switches; submit has its own --dry-run.
_NOT_LAUNCH = {"ctx", "dry_run", "as_json"}
_SUBMIT = {
    "nodes",
    "time",
    "queue",
    "account",
    "filesystems",
    "job_name",
    "output",
    "dry_run",
    # issue 15: warning and requeue
    "signal",
    "requeue",
    "max_requeues",
}


def _submit_options(
    nodes: Annotated[
        int | None, typer.Option("--nodes", "-N", help="Nodes to allocate (default: what -nh asks, else 1).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="Walltime, [[HH:]MM:]SS.")] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Queue (PBS) or partition / QOS (Slurm).")] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-A", envvar="EZPZ_ACCOUNT", help="Project to charge.")
    ] = None,
    filesystems: Annotated[
        str | None, typer.Option("--filesystems", help="PBS -l filesystems= (e.g. flare:home).")
    ] = None,
    job_name: Annotated[str, typer.Option("--job-name", help="The job's name.")] = "ezpz",
    output: Annotated[str | None, typer.Option("--output", help="File for the job's output.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the batch script; submit nothing.")] = False,
    # issue 15: warning and requeue
    signal: Annotated[
        str | None,
        typer.Option("--signal", help="Warn the ranks SECONDS before the walltime ends: SIG@SECONDS, e.g. USR2@120."),
    ] = None,
    requeue: Annotated[
        bool,
        typer.Option("--requeue", help="Requeue the job after the ranks stopped at the warning (default USR2@120)."),
    ] = False,
    max_requeues: Annotated[
        int | None,
        typer.Option("--max-requeues", help="Requeue at most this many times (implies --requeue; default 3)."),
    ] = None,
) -> None:
    """Carries the submit options' declarations (see :func:`_signature`)."""


def _signature() -> inspect.Signature:
    """``launch``'s options plus the submit options, so the two commands never drift apart."""
    launch_params = [
        p for name, p in inspect.signature(launch, eval_str=True).parameters.items() if name not in _NOT_LAUNCH
    ]
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    own = list(inspect.signature(_submit_options, eval_str=True).parameters.values())
    return inspect.Signature([ctx, *launch_params, *own])


def _launch_options(ctx: typer.Context) -> list[str]:
    """Re-write the launch options the user gave, for the ``ezpz launch`` line in the script."""
    argv: list[str] = []
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in _SUBMIT:
            continue
        value = ctx.params.get(param.name or "")
        if value in (None, False, (), []):
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            argv.append(flag)
        else:
            for item in value if getattr(param, "multiple", False) else [value]:
                argv += [flag, str(item)]
    # A launcher flag that looks like an ezpz option would stop the script's
    # ezpz launch as a typo: hand it on explicitly.
    ours = ezpz_options(ctx.command.params)
    flags = [f"{PASS_OPTION}={flag}" if looks_like_ours(flag, ours) else flag for flag in ctx.meta[FLAGS_KEY]]
    return [*argv, *flags]


def submit(ctx: typer.Context, **options: Any) -> int:
    """Write a batch script that runs ezpz launch, and submit it: ezpz submit [OPTIONS] -- CMD..."""
    from ezpz.submit import plan_submit, submit_script

    script = plan_submit(
        launch_layers(ctx, options),
        _launch_options(ctx),
        **{k: options[k] for k in ("nodes", "time", "queue", "account", "filesystems", "job_name", "output")},
        **{k: options[k] for k in ("signal", "requeue", "max_requeues")},
    )
    if options["dry_run"]:
        typer.echo(script.text, nl=False)
        return 0
    typer.echo(submit_script(script))
    return 0


submit.__signature__ = _signature()  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    """Add ``submit`` to ``app``."""
    app.command(
        cls=LaunchCommand,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(submit)
