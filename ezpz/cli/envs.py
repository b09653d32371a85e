"""``ezpz tar-env`` and ``ezpz yeet-env``: pack the environment, ship it to the nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "tar_env_command"]


def tar_env_command(
    src: Annotated[
        Path | None, typer.Option(help="Environment prefix (default: the active one).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Tarball path (default: <name>.tar.gz next to it).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Repack even when the tarball exists.")] = False,
    level: Annotated[
        int, typer.Option(min=1, max=9, help="gzip level, 1 (fast) to 9 (small).")
    ] = 1,
) -> None:
    """Pack the active Python environment (or --src) into <name>.tar.gz."""
    from ezpz.envs import active_env, byte_progress, env_at, tar_env

    env = env_at(src) if src is not None else active_env()
    with byte_progress(f"packing {env.name}") as progress:
        result = tar_env(env.path, out, overwrite=overwrite, progress=progress, level=level)
    typer.echo(str(result.path))


def register(app: typer.Typer) -> None:
    """Add ``tar-env`` and ``yeet-env`` to ``app``."""
    app.command("tar-env")(tar_env_command)
