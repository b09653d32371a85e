"""The console filter of a supervised launch: which ranks' lines ``ezpz launch`` shows.

``--ranks 0,2-3`` (the ``ranks`` field) names ranks and inclusive ranges, or
``all``.  :func:`rank_ranges` checks the syntax alone (the spec does, before
the rank count is known); :func:`parse_ranks` gives the ranks of a run with
``np`` ranks and refuses ranks it does not have.
"""

from __future__ import annotations

import re

from ezpz.errors import SpecError

__all__ = ["parse_ranks", "rank_ranges"]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def rank_ranges(text: str) -> list[tuple[int, int]]:
    """Read a console filter (``0``, ``0,2-3``) as inclusive ranges; raise :class:`~ezpz.errors.SpecError`."""
    ranges: list[tuple[int, int]] = []
    for part in text.strip().split(","):
        found = _RANGE.match(part.strip())
        if not found:
            raise SpecError("bad rank filter", text, "give ranks and ranges like 0,2-3, or all")
        low, high = int(found.group(1)), int(found.group(2) or found.group(1))
        if high < low:
            raise SpecError("bad rank filter: range runs backwards", text, f"write {high}-{low}")
        ranges.append((low, high))
    return ranges


def parse_ranks(text: str, np: int) -> frozenset[int] | None:
    """The ranks of an ``np``-rank run a console filter names (``None`` for ``all``).

    Every rank named must exist.  Raises :class:`~ezpz.errors.SpecError`.
    """
    if text.strip().lower() == "all":
        return None
    chosen: set[int] = set()
    for low, high in rank_ranges(text):
        if high >= np:
            raise SpecError(f"rank filter names rank {high}, but the run has {np} ranks", text, f"use ranks 0-{np - 1}")
        chosen.update(range(low, high + 1))
    return frozenset(chosen)
