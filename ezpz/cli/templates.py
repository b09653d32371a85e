"""``ezpz templates list|show``: the launch templates this installation knows."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register"]

templates_app = typer.Typer(help="List and show launch templates.", no_args_is_help=True)


@templates_app.command("list")
def list_templates() -> None:
    """List every template: name, scheduler, description."""
    from ezpz.launch.templates import load_template, template_files

    for name, path in template_files().items():
        template = load_template(path, name)
        typer.echo(f"{name:<12} {template.scheduler:<6} {template.description}")


@templates_app.command("show")
def show_template(name: Annotated[str, typer.Argument(help="Template name or path to a .toml file.")]) -> None:
    """Print a template's file."""
    from pathlib import Path

    from ezpz.launch.templates import find_template

    template = find_template(name)
    typer.echo(f"# {template.path}")
    typer.echo(Path(template.path).read_text().rstrip())


def register(app: typer.Typer) -> None:
    """Add ``templates`` to ``app``."""
    app.add_typer(templates_app, name="templates")
