"""The ``ezpz`` command line (Typer).

Commands are thin: parse, build a spec, call the library, print, return an
exit code.  Each command group lives in its own module with a
``register(app)`` function; heavy imports stay inside command bodies.

:func:`main` runs the app without Click's standalone mode so that every
handled error (:class:`~ezpz.errors.EzpzError` and Click usage errors) ends
as one line on stderr and exit status 2.
"""

from __future__ import annotations

import inspect
import sys

import typer
from typer.exceptions import TyperException

from ezpz.errors import EzpzError, one_line

__all__ = ["app", "main"]

app = typer.Typer(
    name="ezpz",
    help="Portable distributed PyTorch launches: laptop, Slurm and PBS with one command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from ezpz import __version__

        typer.echo(f"ezpz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Portable distributed PyTorch launches: laptop, Slurm and PBS with one command."""


def _first_paragraph(text: str | None) -> str | None:
    """The first paragraph of a help text, on one line (Click would cut it at 45 characters)."""
    if not text:
        return None
    return " ".join(inspect.cleandoc(text).split("\n\n", 1)[0].split())


def _whole_short_help(group: typer.Typer) -> None:
    """Give every command of ``group`` (and of its sub-groups) its whole first paragraph as the ``--help`` line."""
    for command in group.registered_commands:
        command.short_help = command.short_help or _first_paragraph(command.help or command.callback.__doc__)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _whole_short_help(sub.typer_instance)


def _register() -> None:
    from ezpz.cli import doctor, envs, launch, report, spec, submit, templates, test

    for module in (launch, submit, templates, spec, doctor, envs, report, test):
        module.register(app)
    _whole_short_help(app)


_register()


def error_line(message: str) -> None:
    """Print ``error: message`` as one line on stderr."""
    print(f"error: {message}".replace("\n", " "), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (2 for any handled error)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        result = command.main(args=args, prog_name="ezpz", standalone_mode=False)
    except EzpzError as exc:
        error_line(exc.line())
        return 2
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0))
    except typer.Abort:
        error_line("aborted")
        return 130
    except TyperException as exc:
        # Click's usage errors (vendored by Typer): one line, exit 2.  "ezpz"
        # alone prints the help instead.
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)  # type: ignore[attr-defined]
            return 2
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        error_line(one_line(f"{where}{message}", hint="run with --help for usage"))
        return int(getattr(exc, "exit_code", 2)) or 2
    return result if isinstance(result, int) else 0
