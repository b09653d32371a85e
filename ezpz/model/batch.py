"""Batch submission as values: what the user asks for, the scheduler's header, the finished script."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BatchHeader", "BatchScript", "SubmitRequest"]


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
    """

    nodes: int
    walltime: int
    queue: str | None = None
    account: str | None = None
    filesystems: str | None = None
    job_name: str = "ezpz"
    output: str | None = None


@dataclass(frozen=True)
class BatchScript:
    """A rendered batch script and the command that submits it.

    Attributes:
        scheduler: the adapter's name (``pbs``, ``slurm``, a plugin's).
        text: the script.
        submit_argv: the submit command, to which the script's path is appended.
    """

    scheduler: str
    text: str
    submit_argv: tuple[str, ...]


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
