"""``ezpz test``: train a small transformer for a few steps under ``ezpz launch``.

The smoke test of a new machine or allocation: it launches
``examples/train_transformer.py`` on ``-n`` ranks (default 2) with a tiny
model, checks that the loss falls below the unigram entropy of the text
(``--check``), and exits with the run's status.  Words after ``--`` go to the
example (``ezpz test -- --strategy fsdp``); ``--dry-run`` prints the launch
instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ezpz.errors import LaunchError

__all__ = ["SMOKE_ARGS", "example_script", "register", "smoke_command", "smoke_test"]

EXAMPLE = "train_transformer.py"
#: The small configuration: about 0.1 M parameters, 2 cores, well under a minute.
SMOKE_ARGS = (
    "--layers",
    "2",
    "--heads",
    "4",
    "--dim",
    "64",
    "--seq-len",
    "64",
    "--batch-size",
    "16",
    "--lr",
    "3e-3",
    "--sample-tokens",
    "80",
    "--check",
)


def example_script() -> Path:
    """Return the transformer example: shipped in the wheel, else in the source checkout."""
    import ezpz

    package = Path(ezpz.__file__).resolve().parent
    candidates = (package / "examples" / EXAMPLE, package.parent / "examples" / EXAMPLE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LaunchError(
        "the transformer example is not installed",
        ", ".join(str(c) for c in candidates),
        "reinstall ezpz, or run from a source checkout",
    )


def smoke_command(max_steps: int, extra: list[str]) -> list[str]:
    """Return the per-rank command: this interpreter, the example, the small config, ``extra``."""
    return [sys.executable, str(example_script()), *SMOKE_ARGS, "--max-steps", str(max_steps), *extra]


def smoke_test(
    ctx: typer.Context,
    np: Annotated[int, typer.Option("-n", "-np", "--np", help="Ranks to launch.")] = 2,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Training steps.")] = 50,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the launch instead of running it.")] = False,
) -> int:
    """Smoke-test this machine: a short transformer run under ezpz launch (ezpz test [-n N] [-- ARGS])."""
    from ezpz.execute import execute
    from ezpz.launch import describe, plan_launch

    plan = plan_launch([("flags", {"command": smoke_command(max_steps, list(ctx.args)), "np": np})])
    if dry_run:
        typer.echo(describe(plan))
        return 0
    return execute(plan)


def register(app: typer.Typer) -> None:
    """Add ``test`` to ``app``."""
    app.command(name="test", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(smoke_test)
