"""The one conversion of a pydantic :class:`~pydantic.ValidationError` into the parts of a one-line error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

__all__ = ["FieldError", "first_error"]


@dataclass(frozen=True)
class FieldError:
    """Pydantic's first error, as the pieces an :class:`~ezpz.errors.EzpzError` line is made of.

    Attributes:
        loc: dotted path of the failing value (``queues.small``); ``""`` for the whole object.
        field: the top-level field (``queues``); ``""`` for the whole object.
        kind: pydantic's error type (``extra_forbidden``, ``greater_than_equal``, ...).
        message: pydantic's message without its ``Value error,`` prefix.
        given: the value that failed, as given.
    """

    loc: str
    field: str
    kind: str
    message: str
    given: Any

    @property
    def shown(self) -> Any:
        """The value to show in the error line: ``None`` for a whole table (too long for one line)."""
        return None if isinstance(self.given, dict) else self.given


def first_error(exc: ValidationError) -> FieldError:
    """Return the first error of ``exc`` as a :class:`FieldError`."""
    err = exc.errors()[0]
    return FieldError(
        loc=".".join(str(part) for part in err["loc"]),
        field=str(err["loc"][0]) if err["loc"] else "",
        kind=err["type"],
        message=err["msg"].removeprefix("Value error, "),
        given=err.get("input"),
    )
