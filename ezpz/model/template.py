"""A site template as a value: its scheduler, hostnames, launch defaults and batch-submission table.

Reading template files and finding them by name or hostname is
:mod:`ezpz.launch.templates`; this module only says what a valid template is.
The ``[submit]`` table is checked by :func:`ezpz.model.batch.submit_settings`
when a batch script is written, so ``ezpz launch`` does not load those models.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ezpz.errors import SpecError, closest
from ezpz.model.spec import LaunchSpec

__all__ = ["Template"]


class Template(BaseModel):
    """A site's launch defaults.

    Attributes:
        name: the template's name (its file stem).
        description: one line for ``ezpz templates list``.
        scheduler: the adapter this site uses (``pbs``, ``slurm``, ``local``, ...).
        hostnames: shell-style patterns of the site's hostnames; on a matching
            host inside that scheduler's job, the template is chosen automatically.
        defaults: LaunchSpec fields this template sets.
        submit: batch-submission settings (queues, account rules) for ``ezpz submit``.
        path: where the template was read from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    scheduler: str
    hostnames: list[str] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    submit: dict[str, Any] = Field(default_factory=dict)
    path: str = ""

    @field_validator("defaults")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in LaunchSpec.model_fields or key in ("template", "command"):
                raise ValueError(f"unknown default {key!r}; {closest(key, LaunchSpec.model_fields)}")
        try:
            LaunchSpec.model_validate(value)
        except SpecError as exc:
            raise ValueError(exc.line()) from None
        return value

    def matches_host(self, hostname: str) -> str | None:
        """Return the first hostname pattern matching ``hostname`` (short name), else ``None``."""
        short = hostname.split(".")[0]
        return next((p for p in self.hostnames if fnmatch.fnmatchcase(short, p)), None)
