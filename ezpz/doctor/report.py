"""Running the doctor's checks and showing their results (a table for people, JSON for programs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ezpz.doctor.checks import all_checks
from ezpz.model.checks import Check, CheckResult, DoctorContext

__all__ = ["exit_code", "render_table", "results_json", "run_checks"]


def run_checks(ctx: DoctorContext, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """Run ``checks`` (default :func:`all_checks`); a check that crashes becomes an error result."""
    results: list[CheckResult] = []
    for check in all_checks() if checks is None else checks:
        try:
            out = check.run(ctx)
        except Exception as exc:  # one broken check (often a plugin's) must not hide the others
            out = CheckResult(
                check.name,
                "error",
                f"check crashed: {type(exc).__name__}: {exc}",
                "report this to the check's author",
            )
        results.extend(out if isinstance(out, list) else [out])
    return results


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when no result is an error, 1 otherwise."""
    return 1 if any(r.status == "error" for r in results) else 0


def results_json(results: Sequence[CheckResult]) -> str:
    """Return the results as JSON: ``{"ok": bool, "checks": [...]}``."""
    return json.dumps(
        {"ok": exit_code(results) == 0, "checks": [asdict(r) for r in results]},
        indent=2,
        default=str,
    )


def render_table(results: Sequence[CheckResult]) -> Any:
    """Return a rich table of the results, for people.

    Long values wrap at spaces, and a path wraps only after a ``/``
    (:func:`wrap_value`), never mid-name.
    """
    # rich only for the table: --json output needs none of it.
    from rich.table import Table
    from rich.text import Text

    style = {"ok": "green", "warning": "yellow", "error": "bold red"}
    table = Table(title="ezpz doctor", show_lines=False)
    for column in ("check", "status", "found", "remedy"):
        table.add_column(column)
    for r in results:
        table.add_row(r.name, Text(r.status, style=style[r.status]), _Wrapped(r.message), _Wrapped(r.remedy))
    return table


def wrap_value(text: str, width: int) -> list[str]:
    """Wrap ``text`` at spaces into lines of at most ``width``; a longer word breaks only after a ``/``.

    ``/work/venv/bin/mpiexec`` splits as ``/work/venv/bin/`` + ``mpiexec``,
    never ``…/bin/m`` + ``piexec``.  Only a single name longer than ``width``
    is cut, as a last resort.
    """
    width = max(1, width)
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) <= width:
            line += " " + word
            continue
        if line:
            lines.append(line)
        line = ""
        for piece in _path_pieces(word) if len(word) > width else [word]:
            if line and len(line) + len(piece) > width:
                lines.append(line)
                line = ""
            while len(piece) > width:
                lines.append(piece[:width])
                piece = piece[width:]
            line += piece
    if line:
        lines.append(line)
    return lines or [""]


def _path_pieces(word: str) -> list[str]:
    """``/a/bc/d`` -> ``["/", "a/", "bc/", "d"]``: where a path may break."""
    pieces = [f"{part}/" for part in word.split("/")[:-1]]
    last = word.rsplit("/", 1)[-1]
    return [*pieces, last] if last else pieces


class _Wrapped:
    """A table cell whose text wraps with :func:`wrap_value` (rich folds long words anywhere)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement  # rich only for the table, as in render_table

        pieces = [piece for word in self.text.split() for piece in _path_pieces(word)] or [""]
        return Measurement(max(len(piece) for piece in pieces), max(len(self.text), 1))

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text  # rich only for the table, as in render_table

        for line in wrap_value(self.text, options.max_width):
            yield Text(line, no_wrap=True, overflow="fold")
