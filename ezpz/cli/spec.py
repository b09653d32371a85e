"""``ezpz spec schema|validate``: the config-file schema, and checking a file against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

spec_app = typer.Typer(help="Launch config files: JSON schema and validation.", no_args_is_help=True)


@spec_app.command("schema")
def schema() -> None:
    """Print the JSON schema of a launch config file (for editors)."""
    from ezpz.model.spec import LaunchSpec

    typer.echo(json.dumps(LaunchSpec.model_json_schema(), indent=2))


@spec_app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="TOML config file of LaunchSpec fields.")]) -> None:
    """Check a config file (and the template it names); print the spec it gives."""
    from ezpz.launch.templates import find_template
    from ezpz.model.spec import LaunchSpec
    from ezpz.schedulers.dialects import dialect

    spec = LaunchSpec.from_file(path)
    if spec.template:
        find_template(spec.template)
    if spec.launcher:
        dialect(spec.launcher, str(path))
    typer.echo(f"{path}: ok")
    typer.echo(spec.model_dump_json(indent=2, exclude_defaults=True))


def register(app: typer.Typer) -> None:
    """Add ``spec`` to ``app``."""
    app.add_typer(spec_app, name="spec")
