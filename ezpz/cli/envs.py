"""``ezpz tar-env`` and ``ezpz yeet-env``: pack the environment, ship it to the nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "tar_env_command", "yeet_env_command"]


def tar_env_command(
    src: Annotated[Path | None, typer.Option(help="Environment prefix (default: the active one).")] = None,
    out: Annotated[Path | None, typer.Option(help="Tarball path (default: <name>.tar.gz next to it).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Repack even when the tarball exists.")] = False,
    level: Annotated[int, typer.Option(min=1, max=9, help="gzip level, 1 (fast) to 9 (small).")] = 1,
) -> None:
    """Pack the active Python environment (or --src) into <name>.tar.gz."""
    import signal
    import sys

    from ezpz.envs.discover import active_env, env_at
    from ezpz.envs.pack import byte_progress, tar_env

    # SIGTERM unwinds like Ctrl-C, so tar_env removes its temporary file.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    env = env_at(src) if src is not None else active_env()
    with byte_progress(f"packing {env.name}") as progress:
        result = tar_env(env.path, out, overwrite=overwrite, progress=progress, level=level)
    typer.echo(str(result.path))


def yeet_env_command(
    src: Annotated[Path | None, typer.Option(help="Environment prefix (default: the active one).")] = None,
    dst: Annotated[
        str | None, typer.Option(help="Node-local copy (default /tmp/<name>); {rank}, {host} expand.")
    ] = None,
    compress: Annotated[bool, typer.Option(help="Ship a gzip tarball instead of a plain tar stream.")] = False,
    min_nodes: Annotated[int | None, typer.Option(help="Succeed when this many nodes got it (default: all).")] = None,
    hostfile: Annotated[Path | None, typer.Option(help="Hostfile to use instead of the job's hosts.")] = None,
    nhosts: Annotated[int | None, typer.Option("-nh", "--nhosts", help="Use the first N hosts of the job.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Scheduler adapter (pbs, slurm, local, ...).")] = None,
    launcher: Annotated[str | None, typer.Option(help="MPI dialect: pals, hydra, openmpi, srun.")] = None,
    launcher_flags: Annotated[str | None, typer.Option(help="Extra launcher flags, one string.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write per-node results here as JSON.")] = None,
) -> None:
    """Copy the active environment (or --src) to node-local storage on every node."""
    import shlex

    from ezpz.envs.discover import activate_line, active_env, env_at
    from ezpz.envs.yeet import yeet_env
    from ezpz.launch.layers import build_layers

    env = env_at(src) if src is not None else active_env()
    given = {
        "hostfile": hostfile,
        "nhosts": nhosts,
        "scheduler": scheduler,
        "launcher": launcher,
        "launcher_flags": shlex.split(launcher_flags) if launcher_flags else None,
    }
    layers = build_layers(given)
    code, target = yeet_env(env.path, dst, compress=compress, min_nodes=min_nodes, layers=layers, report=report)
    if code != 0:
        raise typer.Exit(code)
    typer.echo(activate_line(env, target))


def register(app: typer.Typer) -> None:
    """Add ``tar-env`` and ``yeet-env`` to ``app``."""
    app.command("tar-env")(tar_env_command)
    app.command("yeet-env")(yeet_env_command)
