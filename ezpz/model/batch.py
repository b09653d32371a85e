"""Batch submission as values: a template's ``[submit]`` rules, the request, the scheduler's header, the script.

A template's ``[submit]`` table (:class:`SubmitSettings`), for example::

    [submit]
    account_required = true
    filesystems = "flare:home"
    place = "scatter"
    setup = ["module load frameworks"]

    [submit.queues.debug]
    min_nodes = 1
    max_nodes = 2
    max_walltime = "01:00:00"

Only ``ezpz submit`` loads this module; the launch path does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ezpz.errors import SpecError, TemplateError
from ezpz.model.validation import first_error

if TYPE_CHECKING:
    from ezpz.model.template import Template

__all__ = [
    "BatchHeader",
    "BatchScript",
    "QueueLimits",
    "SubmitRequest",
    "SubmitSettings",
    "format_walltime",
    "parse_walltime",
    "submit_settings",
]

_WALLTIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+)$")


@dataclass(frozen=True)
class SubmitRequest:
    """What the user asks of the batch system.

    Attributes:
        nodes: nodes to allocate.
        walltime: seconds the job may run.
        queue: queue (PBS) or partition / QOS (Slurm); ``None`` for the default.
        account: project to charge.
        filesystems: PBS ``-l filesystems=``; ``None`` for the template's default.
        job_name: the job's name.
        output: file for the job's output; ``None`` for the scheduler's default
            (PBS) or ``<job_name>-<jobid>.out`` (Slurm).
        warning: (signal name, seconds): the job gets that signal this long
            before its walltime ends, and ``ezpz launch`` passes it on to
            the ranks as SIGUSR2 (see ``docs/long-runs.md``).
        requeue: put the job back in the queue when the ranks stopped at the
            warning, at most this many times (0: never).
    """

    nodes: int
    walltime: int
    queue: str | None = None
    account: str | None = None
    filesystems: str | None = None
    job_name: str = "ezpz"
    output: str | None = None
    warning: tuple[str, int] | None = None
    requeue: int = 0


@dataclass(frozen=True)
class BatchScript:
    """A rendered batch script and the command that submits it.

    Attributes:
        scheduler: the adapter's name (``pbs``, ``slurm``, a plugin's).
        text: the script.
        submit_argv: the submit command, to which the script's path is appended.
        kept: file name (in the submission directory) the script is kept
            under for a job that requeues by submitting itself again;
            ``None``: the script is not kept.
    """

    scheduler: str
    text: str
    submit_argv: tuple[str, ...]
    kept: str | None = None


@dataclass(frozen=True)
class BatchHeader:
    """A scheduler's part of a batch script.

    Attributes:
        shebang: the first line (``#!/bin/bash -l``).
        directives: the scheduler's option lines (``#PBS ...``, ``#SBATCH ...``).
        prologue: shell lines that start the job body (``cd "$PBS_O_WORKDIR"``).
    """

    shebang: str
    directives: list[str]
    prologue: list[str] = field(default_factory=list)


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
    requeue: bool = Field(True, description="Jobs in this queue may requeue themselves (ezpz submit --requeue).")

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
    requeue: bool = Field(True, description="The site lets jobs requeue themselves (ezpz submit --requeue).")

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
