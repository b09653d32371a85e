"""Which Python environment this is: a venv, a uv venv or a conda prefix, and how to activate a copy of it.

:func:`active_env` infers the environment this process runs in from the
environment variables and ``sys.prefix``; :func:`env_at` describes the one at a
path.  Standard library only.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ezpz.errors import EnvToolError

__all__ = ["EnvKind", "PythonEnv", "activate_line", "active_env", "env_at"]

EnvKind = Literal["venv", "uv", "conda"]

#: Directory names so generic that the parent's name is prefixed to them.
_GENERIC_NAMES = {"venv", ".venv", "env", ".env", "virtualenv"}


@dataclass(frozen=True)
class PythonEnv:
    """A Python environment on disk.

    Attributes:
        path: the environment's prefix (the directory holding ``bin/``).
        kind: ``"venv"``, ``"uv"`` (a venv created by uv) or ``"conda"``.
        name: a short, file-name-safe name: the directory name, prefixed with
            its parent's name when the directory is called ``.venv``/``venv``.

    """

    path: Path
    kind: EnvKind
    name: str


def _env_name(path: Path) -> str:
    if path.name in _GENERIC_NAMES and path.parent.name:
        return f"{path.parent.name}-{path.name.lstrip('.')}"
    return path.name.lstrip(".") or "env"


def env_at(path: Path) -> PythonEnv:
    """Describe the environment rooted at ``path`` (kind inferred from its files).

    Raises:
        EnvToolError: ``path`` is not a directory.

    """
    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise EnvToolError(
            "environment source is not a directory",
            str(path),
            "pass --src with the prefix of a venv or conda environment",
        )
    kind: EnvKind = "venv"
    cfg = path / "pyvenv.cfg"
    if (path / "conda-meta").is_dir():
        kind = "conda"
    elif cfg.is_file() and any(
        line.split("=")[0].strip() == "uv" for line in cfg.read_text(errors="replace").splitlines()
    ):
        kind = "uv"
    return PythonEnv(path=path, kind=kind, name=_env_name(path))


def active_env(environ: Mapping[str, str] | None = None, prefix: str | None = None) -> PythonEnv:
    """Return the Python environment this process runs in.

    ``VIRTUAL_ENV`` (set by ``activate`` and by ``uv run``) wins, then
    ``CONDA_PREFIX``, then ``sys.prefix`` when it differs from
    ``sys.base_prefix`` (a venv's python run without activating it).

    Args:
        environ: environment variables (default ``os.environ``).
        prefix: the interpreter prefix (default ``sys.prefix``); used only when
            no variable names an environment.

    Raises:
        EnvToolError: no environment is active.

    """
    env = os.environ if environ is None else environ
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(var, "").strip()
        if value:
            return env_at(Path(value))
    prefix = sys.prefix if prefix is None else prefix
    if prefix != sys.base_prefix:
        return env_at(Path(prefix))
    raise EnvToolError(
        "no active Python environment",
        "VIRTUAL_ENV and CONDA_PREFIX unset",
        "activate a venv or conda environment, or pass --src",
    )


def activate_line(env: PythonEnv, dst: Path) -> str:
    """Return the shell line that activates the copy at ``dst``."""
    if env.kind == "conda":
        return f"conda activate {shlex.quote(str(dst))}"
    return f"source {shlex.quote(str(dst / 'bin' / 'activate'))}"
