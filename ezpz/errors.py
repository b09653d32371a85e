"""The one error tree.

Every error a user can cause derives from :class:`EzpzError`.  The CLI catches
``EzpzError`` only, prints :meth:`EzpzError.line` and exits with status 2;
anything else is a bug and keeps its traceback.

A message names three things: what was wrong, what was given, and what is
valid (or what to run next)::

    error: unknown template (given 'auroa'); valid: aurora, frontier, ...; did you mean 'aurora'?
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "DataError",
    "DistError",
    "EnvToolError",
    "EzpzError",
    "HistoryError",
    "LaunchError",
    "MissingExtraError",
    "SchedulerError",
    "SpecError",
    "TemplateError",
    "closest",
    "one_line",
    "plural",
]


class EzpzError(Exception):
    """Base of every error ezpz raises on purpose.

    Args:
        what: what was wrong, in a few words.
        given: the offending value, shown in parentheses.
        hint: what is valid, or what to run next.
    """

    def __init__(self, what: str, given: object = None, hint: str | None = None) -> None:
        self.what = what
        self.given = given
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """Return the one-line message: ``what (given ...); hint``."""
        return one_line(self.what, self.given, self.hint)


def one_line(what: str, given: object = None, hint: str | None = None) -> str:
    """Assemble ``what (given ...); hint`` on one line, without doubled punctuation.

    A ``what`` that ends in a full stop (Click's ``Missing argument 'x'.``)
    loses it before the parenthesis or the ``;``: never ``.;``.
    """
    text = what.rstrip(".;, ")
    if given is not None:
        text += f" (given {given!r})" if isinstance(given, str) else f" (given {given})"
    if hint:
        text += f"; {hint}"
    return text.replace("\n", " ")


class SpecError(EzpzError):
    """A launch spec (flags, config file, environment) is invalid."""


class TemplateError(EzpzError):
    """A launch template is unknown or malformed."""


class SchedulerError(EzpzError):
    """The scheduler's allocation cannot satisfy the request, or is unreadable."""


class LaunchError(EzpzError):
    """The launcher could not be started (missing binary, bad plan)."""


class MissingExtraError(EzpzError):
    """An optional dependency is not installed; the hint names the extra."""


class DistError(EzpzError):
    """The distributed runtime cannot be set up from this environment."""


class HistoryError(EzpzError):
    """Metrics given to :class:`ezpz.History` are invalid or cannot be written."""


class CheckpointError(EzpzError):
    """A checkpoint cannot be written, or does not fit the model it is loaded into."""


class DataError(EzpzError):
    """A dataset cannot be found, read or prepared as asked."""


class EnvToolError(EzpzError):
    """``tar-env`` / ``yeet-env`` cannot pack or ship the environment."""


def closest(given: str, valid: Iterable[str]) -> str:
    """Return ``"valid: a, b, c"`` plus a "did you mean" suggestion when one is close."""
    # difflib only when an error message is being built.
    import difflib

    options = sorted(valid)
    text = "valid: " + (", ".join(options) if options else "(none)")
    for match in difflib.get_close_matches(given, options, n=1):
        text += f"; did you mean {match!r}?"
    return text


def plural(count: int, noun: str, many: str | None = None) -> str:
    """Return ``"1 host"`` / ``"2 hosts"``: the count and the noun in the right number.

    ``many`` is the plural when it is not ``noun + "s"`` (``plural(2, "process", "processes")``).
    """
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
