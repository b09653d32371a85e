"""``ezpz test``: train a small transformer for a few steps under ``ezpz launch``, and say PASS or FAIL.

The smoke test of a new machine or allocation (:mod:`ezpz.smoke`): it
launches ``examples/train_transformer.py`` on ``-n`` ranks (default 2) with a
tiny model, checks that the loss falls below the unigram entropy of the text,
and ends with one verdict line (``ezpz test: PASS (2 ranks, loss 2.71 < 3.30,
14 s)``), exit 0 or 1.  Outputs go under ``--outdir`` (default: a new
directory under the temporary directory), never into the working directory.
Words after ``--`` go to the example (``ezpz test -- --strategy fsdp``);
``--dry-run`` prints the launch instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "smoke_test_command"]


def smoke_test_command(
    ctx: typer.Context,
    np: Annotated[int, typer.Option("-n", "-np", "--np", help="Ranks to launch.")] = 2,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Training steps.")] = 50,
    outdir: Annotated[
        Path | None, typer.Option("--outdir", help="Where the run writes its outputs (default: a new temporary dir).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the launch instead of running it.")] = False,
) -> int:
    """Smoke-test this machine: a short transformer run under ezpz launch (ezpz test [-n N] [-- ARGS])."""
    from ezpz.smoke import smoke_outdir, smoke_plan, smoke_test

    if dry_run:
        from ezpz.launch.resolve import describe

        typer.echo(describe(smoke_plan(np, max_steps, list(ctx.args), (outdir or smoke_outdir()).resolve())))
        return 0
    result = smoke_test(np, max_steps, list(ctx.args), outdir)
    typer.echo(f"outputs: {result.outdir}")
    typer.echo(result.line())
    return 0 if result.passed else 1


def register(app: typer.Typer) -> None:
    """Add ``test`` to ``app``."""
    app.command(name="test", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})(
        smoke_test_command
    )
