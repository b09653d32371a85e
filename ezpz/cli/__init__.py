"""The ``ezpz`` command line (Typer).

Commands are thin: parse, build a spec, call the library, print, return an
exit code.  Each command group lives in its own module with a
``register(app)`` function; heavy imports stay inside command bodies.

Start-up is part of every launch's cost (issue #12), so :func:`main` builds
only the command it runs: ``ezpz launch ...`` imports and registers
:mod:`ezpz.cli.launch` alone (:data:`COMMANDS` says which module registers
which command).  ``ezpz``, ``ezpz --help`` and a word that names no command
get the whole app, which is also what :data:`app` is (built on first use).
The cyclic garbage collector is off while the CLI loads and parses its
arguments (those imports make no garbage worth a collection) and on again
from the command's first line, with what is loaded by then frozen out of its
reach (:func:`freeze`; ``ezpz launch`` freezes again before the run, which
also makes the exit quick).  ``main([...])`` called with its arguments (a
test, an embedding) leaves the collector alone.

:func:`main` runs the app without Click's standalone mode so that every
handled error (:class:`~ezpz.errors.EzpzError` and Click usage errors) ends
as one line on stderr and exit status 2.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import TYPE_CHECKING, Any

from ezpz.errors import EzpzError, one_line

if TYPE_CHECKING:
    import typer

__all__ = ["COMMANDS", "app", "build_app", "error_line", "freeze", "main"]

#: Command name -> the module of ``ezpz.cli`` that registers it, in ``--help`` order.
COMMANDS: dict[str, str] = {
    "launch": "launch",
    "submit": "submit",
    "templates": "templates",
    "spec": "spec",
    "doctor": "doctor",
    "tar-env": "envs",
    "yeet-env": "envs",
    "report": "report",
    "test": "test",
}

_HELP = "Portable distributed PyTorch launches: laptop, Slurm and PBS with one command."


def _version(value: bool) -> None:
    import typer

    if value:
        from ezpz import __version__

        typer.echo(f"ezpz {__version__}")
        raise typer.Exit()


def _first_paragraph(text: str | None) -> str | None:
    """The first paragraph of a help text, on one line (Click would cut it at 45 characters)."""
    import inspect

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


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The Typer app with the commands ``names`` (default: every command of :data:`COMMANDS`)."""
    import typer

    built = typer.Typer(
        name="ezpz",
        help=_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @built.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    ) -> None:
        """Portable distributed PyTorch launches: laptop, Slurm and PBS with one command."""
        # The command's own code starts here: collect garbage again from now on,
        # leaving what is loaded out of it (else the first collection walks it all).
        if _program["collector"]:
            freeze()
            gc.enable()

    wanted = dict.fromkeys(COMMANDS[name] for name in (COMMANDS if names is None else names))
    for module in wanted:
        importlib.import_module(f"ezpz.cli.{module}").register(built)
    _whole_short_help(built)
    return built


def _command_of(args: list[str]) -> str | None:
    """The command ``args`` run, when their first word names one (options before it are the root's)."""
    word = next((a for a in args if not a.startswith("-")), None)
    return word if word in COMMANDS else None


#: Whether :func:`main` runs as the program (its arguments from ``sys.argv``) and so manages the collector.
_program = {"collector": False}


def freeze() -> None:
    """Keep everything loaded so far out of the garbage collector's reach (before a long run).

    The collector then never walks the CLI's modules again, in the run or at
    the exit, where walking them costs ~30 ms.  Only when :func:`main` runs
    as the program: a process that calls ``main([...])`` itself (a test, an
    embedding) keeps its collector as it was, since freezing would also keep
    its own garbage of the moment for good.
    """
    if _program["collector"]:
        gc.freeze()


def error_line(message: str) -> None:
    """Print ``error: message`` as one line on stderr."""
    print(f"error: {message}".replace("\n", " "), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (2 for any handled error).

    Without ``argv`` it runs as the program (the ``ezpz`` command, ``python
    -m ezpz``): the arguments come from ``sys.argv`` and the collector is off
    until the command starts (see the module docstring).
    """
    if argv is not None:
        return _run(argv)
    collecting = _program["collector"] = gc.isenabled()
    gc.disable()
    try:
        return _run(sys.argv[1:])
    finally:
        if collecting:
            gc.enable()


def _run(args: list[str]) -> int:
    import typer
    from typer.exceptions import TyperException

    name = _command_of(args)
    command = typer.main.get_command(build_app(None if name is None else [name]))
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


def __getattr__(name: str) -> Any:
    """:data:`app`, the whole Typer app, built on first use (``from ezpz.cli import app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = globals()["app"] = build_app()
    return built


if TYPE_CHECKING:
    app: typer.Typer
