"""A site template as a value: its scheduler, hostnames, launch defaults and batch-submission rules.

Reading template files and finding them by name or hostname is
:mod:`ezpz.launch.templates`; this module only says what a valid template is.
A template's ``[submit]`` table, for example::

    [submit]
    account_required = true
    filesystems = "flare:home"
    place = "scatter"
    setup = ["module load frameworks"]

    [submit.queues.debug]
    min_nodes = 1
    max_nodes = 2
    max_walltime = "01:00:00"
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ezpz.errors import SpecError, TemplateError, closest
from ezpz.model.spec import LaunchSpec
from ezpz.model.validation import first_error

__all__ = ["QueueLimits", "SubmitSettings", "Template", "format_walltime", "parse_walltime", "submit_settings"]

_WALLTIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+)$")


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


def parse_walltime(text: str) -> int:
    """Return the seconds in a ``[[HH:]MM:]SS`` walltime; raise :class:`SpecError` otherwise.

    The leading field may be any size (``90:00`` is 90 minutes); the fields
    after it must be below 60.  A walltime of zero is refused.
    """
    match = _WALLTIME.match(str(text).strip())
    hint = "write [[HH:]MM:]SS, e.g. --time 01:30:00 or --time 45:00"
    if match is None:
        raise SpecError("walltime is not [[HH:]MM:]SS", text, hint)
    hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    fields = [f for f in match.groups() if f is not None]
    if any(int(f) >= 60 for f in fields[1:]):
        raise SpecError("walltime minutes and seconds must be below 60", text, hint)
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0:
        raise SpecError("walltime must be longer than zero", text, hint)
    return total


def format_walltime(seconds: int) -> str:
    """Write ``seconds`` as ``HH:MM:SS`` (what both ``qsub`` and ``sbatch`` read)."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


class QueueLimits(BaseModel):
    """One queue (PBS) or partition / QOS (Slurm) and what it accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_nodes: int = Field(1, ge=1, description="Fewest nodes a job in this queue may ask for.")
    max_nodes: int = Field(ge=1, description="Most nodes a job in this queue may ask for.")
    max_walltime: str = Field(description="Longest walltime, [[HH:]MM:]SS.")
    option: Literal["partition", "qos"] | None = Field(
        None, description="Slurm only: request this queue with --partition or --qos (default: [submit].queue_option)."
    )

    @field_validator("max_walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        try:
            parse_walltime(value)
        except SpecError as exc:
            raise ValueError(exc.line()) from None
        return value

    @model_validator(mode="after")
    def _range(self) -> QueueLimits:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes={self.min_nodes} is more than max_nodes={self.max_nodes}")
        return self

    @property
    def max_seconds(self) -> int:
        """The longest walltime, in seconds."""
        return parse_walltime(self.max_walltime)

    def describe(self) -> str:
        """``1–2 nodes, ≤ 01:00:00``, for error messages."""
        return f"{self.min_nodes}–{self.max_nodes} nodes, ≤ {format_walltime(self.max_seconds)}"


class SubmitSettings(BaseModel):
    """A template's ``[submit]`` table: the site's batch rules and set-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queues: dict[str, QueueLimits] = Field(default_factory=dict, description="Known queues and their limits.")
    default_queue: str | None = Field(None, description="Queue used when --queue is not given.")
    account_required: bool = Field(False, description="Refuse to submit without --account.")
    filesystems: str | None = Field(None, description="PBS: default -l filesystems= (e.g. flare:home).")
    system: str | None = Field(None, description="PBS: the select statement's system= (e.g. polaris).")
    place: str | None = Field(None, description="PBS: -l place= (e.g. scatter).")
    queue_option: Literal["partition", "qos"] = Field("partition", description="Slurm: how a queue is requested.")
    constraint: str | None = Field(None, description="Slurm: --constraint= (e.g. gpu).")
    setup: list[str] = Field(default_factory=list, description="Shell lines that set up the site's environment.")

    @model_validator(mode="after")
    def _default_known(self) -> SubmitSettings:
        if self.default_queue is not None and self.queues and self.default_queue not in self.queues:
            raise ValueError(
                f"default_queue {self.default_queue!r} is not one of the queues ({', '.join(self.queues)})"
            )
        return self


def submit_settings(template: Template | None) -> SubmitSettings:
    """Validate ``template``'s ``[submit]`` table (empty settings without a template)."""
    if template is None:
        return SubmitSettings.model_validate({})
    try:
        return SubmitSettings.model_validate(template.submit)
    except ValidationError as exc:
        err = first_error(exc)
        raise TemplateError(
            f"invalid [submit] table in template {template.name}: {err.loc}: {err.message}", None, template.path
        ) from None
