"""``ezpz launch``: render a spec into the launcher's argv and run it.

After ``--``, or after the first word of the command, nothing is ezpz's:
``ezpz launch -n 2 -- python t.py -n 5 --help`` passes ``-n 5 --help`` to
``t.py``.  Words before ``--`` that ezpz does not know go to the launcher,
values included (``ezpz launch --no-vni -launcher fork -- python train.py``).
The split, and its checks for mistyped options and ambiguous words, is
:func:`ezpz.cli.args.split_args`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from ezpz.cli.args import split_args

if TYPE_CHECKING:
    from ezpz.model.spec import Layer

__all__ = ["COMMAND_KEY", "FLAGS_KEY", "LaunchCommand", "ezpz_options", "launch", "launch_layers", "register"]

#: ``ctx.meta`` keys where :class:`LaunchCommand` puts the user's command and the launcher flags.
COMMAND_KEY = "ezpz.command"
FLAGS_KEY = "ezpz.launcher_flags"

#: launch options that map one to one onto LaunchSpec fields.
_DIRECT = (
    "np",
    "ppn",
    "nhosts",
    "hostfile",
    "cpu_bind",
    "template",
    "scheduler",
    "launcher",
    "timeout",
    "retries",
    "oversubscribe",
    # issue #14: host selection and node failover
    "exclude_hosts",
    "include_hosts",
    "spare_nodes",
    # issue #14 part 2: device masks
    "device_mask",
    "ranks",
    "run_dir",
    # issue 15: long runs
    "stop_grace",
)


class LaunchCommand(TyperCommand):
    """A command that splits its arguments into ezpz options, launcher flags and the user's command."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        """Keep ezpz's own options for Click; set the rest aside in ``ctx.meta`` (see :mod:`ezpz.cli.args`)."""
        split = split_args(args, ezpz_options(self.get_params(ctx)))
        ctx.meta[COMMAND_KEY] = split.command
        ctx.meta[FLAGS_KEY] = split.launcher_flags
        return super().parse_args(ctx, split.ours)


def ezpz_options(params: Iterable[Any]) -> dict[str, bool]:
    """Map every spelling of a command's options to whether it takes a value."""
    return {
        opt: not getattr(p, "is_flag", True) and not getattr(p, "count", False)
        for p in params
        for opt in (*p.opts, *p.secondary_opts)
    }


def launch_layers(ctx: typer.Context, options: dict[str, Any]) -> list[Layer]:
    """Turn ``ezpz launch`` options (as parsed by Typer) into spec layers: config file, then flags."""
    from ezpz.launch.layers import build_layers

    log_file = options.get("log_file")
    given: dict[str, Any] = {
        "command": ctx.meta[COMMAND_KEY],
        "launcher_flags": ctx.meta[FLAGS_KEY],
        "env": [*(options.get("env") or []), *([f"EZPZ_LOG_FILE={log_file}"] if log_file else [])],
        "rank_env": False if options.get("no_rank_env") else None,
        "tag": False if options.get("no_tag") else None,
        **{key: options.get(key) for key in _DIRECT},
        # An unset switch must not override a config file's "oversubscribe = true".
        "oversubscribe": options.get("oversubscribe") or None,
    }
    return build_layers(given, options.get("config"))


# The options of ``ezpz launch`` (``ezpz submit`` takes them too: ``ezpz.cli.submit``).
_Np = Annotated[int | None, typer.Option("-n", "-np", "--np", "--nproc", help="Total ranks.")]
_Ppn = Annotated[int | None, typer.Option("-ppn", "--ppn", help="Ranks per host.")]
_Nhosts = Annotated[int | None, typer.Option("-nh", "--nhosts", help="Hosts to use (the first ones of the job).")]
_Hostfile = Annotated[Path | None, typer.Option("--hostfile", help="Hostfile to use instead of the job's hosts.")]
_CpuBind = Annotated[str | None, typer.Option("--cpu-bind", help="CPU binding (depth, list:1-8:9-16, none).")]
_Env = Annotated[list[str] | None, typer.Option("-x", "--env", help="KEY=VALUE to pass to every rank (repeatable).")]
_Template = Annotated[str | None, typer.Option("-t", "--template", help="Template name or path to a .toml file.")]
_Config = Annotated[Path | None, typer.Option("-c", "--config", help="TOML config file of LaunchSpec fields.")]
_Scheduler = Annotated[str | None, typer.Option("--scheduler", help="Scheduler adapter (pbs, slurm, local, ...).")]
_Launcher = Annotated[str | None, typer.Option("--launcher", help="MPI dialect: pals, hydra, openmpi, srun.")]
_Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Kill a run silent for this many seconds (exit 124).")
]
_Retries = Annotated[int | None, typer.Option("--retries", help="Re-run a failed launch this many times.")]
_Oversubscribe = Annotated[bool, typer.Option("--oversubscribe", help="Allow more ranks per node than accelerators.")]
_ExcludeHosts = Annotated[
    str | None,
    typer.Option("--exclude-hosts", help="Hosts to leave out: Slurm host list (nid[001-004]), @FILE or a path."),
]
_IncludeHosts = Annotated[
    str | None, typer.Option("--include-hosts", help="Use only these hosts: Slurm host list, @FILE or a path.")
]
_SpareNodes = Annotated[
    int | None,
    typer.Option(
        "--spare-nodes", help="Keep K hosts out of the first attempt; with --retries, a failed host is replaced by one."
    ),
]
_DeviceMask = Annotated[
    str | None,
    typer.Option("--device-mask", help="Each rank sees only its accelerators: cuda, rocr, ze, ze-tile, or none."),
]
_LogFile = Annotated[Path | None, typer.Option("--log-file", help="Ranks also log JSON lines to this file.")]
_NoRankEnv = Annotated[bool, typer.Option("--no-rank-env", help="Do not give ranks torchrun's variables.")]
_LauncherFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--launcher-flag",
        help="Hand this word to the launcher as it is, even if it looks like an ezpz option (repeatable).",
    ),
]
# Run supervision (issue #12).
_Ranks = Annotated[
    str | None, typer.Option("--ranks", help="Ranks the console shows (0,2-3 or all); every rank is logged.")
]
_NoTag = Annotated[bool, typer.Option("--no-tag", help="Do not label console lines with their rank.")]
_RunDir = Annotated[Path | None, typer.Option("--run-dir", help="Run directory (logs, plan.json, result.json).")]
# issue 15: long runs
_StopGrace = Annotated[
    float | None, typer.Option("--stop-grace", help="Seconds the ranks get to save after a SIGTERM (default 30).")
]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the command and where each value came from.")]
_Json = Annotated[bool, typer.Option("--json", help="With --dry-run: print one JSON object.")]


def launch(
    ctx: typer.Context,
    np: _Np = None,
    ppn: _Ppn = None,
    nhosts: _Nhosts = None,
    hostfile: _Hostfile = None,
    cpu_bind: _CpuBind = None,
    env: _Env = None,
    template: _Template = None,
    config: _Config = None,
    scheduler: _Scheduler = None,
    launcher: _Launcher = None,
    timeout: _Timeout = None,
    retries: _Retries = None,
    oversubscribe: _Oversubscribe = False,
    exclude_hosts: _ExcludeHosts = None,
    include_hosts: _IncludeHosts = None,
    spare_nodes: _SpareNodes = None,
    device_mask: _DeviceMask = None,
    log_file: _LogFile = None,
    no_rank_env: _NoRankEnv = False,
    launcher_flag: _LauncherFlag = None,
    ranks: _Ranks = None,
    no_tag: _NoTag = False,
    run_dir: _RunDir = None,
    stop_grace: _StopGrace = None,
    dry_run: _DryRun = False,
    as_json: _Json = False,
) -> int:
    """Launch a command on every rank of this machine or job: ezpz launch [OPTIONS] -- CMD..."""
    from ezpz.cli import freeze
    from ezpz.launch.resolve import describe, plan_launch

    plan = plan_launch(launch_layers(ctx, ctx.params))
    if dry_run or as_json:
        typer.echo(plan.to_json(indent=2) if as_json else describe(plan))
        return 0
    from ezpz.launch.execute import execute

    freeze()
    return execute(plan)


def register(app: typer.Typer) -> None:
    """Add ``launch`` to ``app``."""
    app.command(
        cls=LaunchCommand,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(launch)
