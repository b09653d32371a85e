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
    """Return a rich table of the results, for people."""
    # rich only for the table: --json output needs none of it.
    from rich.table import Table
    from rich.text import Text

    style = {"ok": "green", "warning": "yellow", "error": "bold red"}
    table = Table(title="ezpz doctor", show_lines=False)
    for column in ("check", "status", "found", "remedy"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, Text(r.status, style=style[r.status]), r.message, r.remedy)
    return table
