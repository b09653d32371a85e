"""Slurm (Perlmutter, Frontier): hosts from ``$SLURM_JOB_NODELIST``.

Node lists are expanded with ``python-hostlist`` in every form Slurm writes
(ranges, several bracket groups, comma lists).  Never calls ``scontrol``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ezpz.errors import SchedulerError, plural
from ezpz.model.allocation import Allocation
from ezpz.schedulers.base import Scheduler

if TYPE_CHECKING:
    from ezpz.model.batch import BatchHeader, SubmitRequest, SubmitSettings
from ezpz.schedulers.hosts import expand_nodelist

_TASKS = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def tasks_per_node(value: str, nhosts: int) -> tuple[int, ...]:
    """Expand Slurm's ``SLURM_TASKS_PER_NODE`` (``2(x3),1``) into one count per host."""
    counts: list[int] = []
    for part in value.split(","):
        match = _TASKS.match(part.strip())
        if not match:
            raise SchedulerError("cannot read SLURM_TASKS_PER_NODE", value, "expected a form like 2(x3),1")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    if len(counts) != nhosts:
        raise SchedulerError(
            "SLURM_TASKS_PER_NODE does not match the node list", value, f"expected {plural(nhosts, 'host')}"
        )
    return tuple(counts)


def _gpus(environ: Mapping[str, str]) -> int | None:
    for var in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        raw = environ.get(var, "")
        # SLURM_GPUS_PER_NODE may name a type: "a100:4".
        tail = raw.rsplit(":", 1)[-1]
        if tail.isdigit():
            return int(tail)
    return None


class Slurm(Scheduler):
    """Slurm jobs; ``srun`` by default."""

    name = "slurm"
    default_launcher = "srun"
    submit_argv = ("sbatch", "--parsable")

    def affinity(self, environ: Mapping[str, str]) -> int:
        """2 inside a Slurm job (``SLURM_JOB_ID`` and ``SLURM_JOB_NODELIST``), else -1.

        Stray variables such as ``SLURM_NNODES`` alone do not count.
        """
        return 2 if environ.get("SLURM_JOB_ID") and environ.get("SLURM_JOB_NODELIST") else -1

    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Read hosts, slots and GPUs from the job's ``SLURM_*`` variables."""
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not nodelist:
            raise SchedulerError("SLURM_JOB_NODELIST is not set", None, "run inside salloc/sbatch or pass --hostfile")
        hosts = expand_nodelist(nodelist)
        slots = None
        # Slots are a limit only when the user asked Slurm for tasks.
        if environ.get("SLURM_NTASKS_PER_NODE"):
            slots = tasks_per_node(environ["SLURM_NTASKS_PER_NODE"], 1) * len(hosts)
        elif environ.get("SLURM_NTASKS") and environ.get("SLURM_TASKS_PER_NODE"):
            slots = tasks_per_node(environ["SLURM_TASKS_PER_NODE"], len(hosts))
        return Allocation(
            scheduler=self.name,
            hosts=hosts,
            job_id=environ.get("SLURM_JOB_ID") or None,
            slots=slots,
            accelerators=_gpus(environ),
            source=f"SLURM_JOB_NODELIST={nodelist}",
        )

    def batch_header(
        self, request: SubmitRequest, settings: SubmitSettings, queue: str | None, ppn: int | None, gpus: int | None
    ) -> BatchHeader:
        """``#SBATCH`` lines, sized for the launch line's ranks and GPUs per node.

        sbatch passes the submitting shell's environment and directory on; a
        login shell would reset PATH (a user's activated venv) from /etc/profile.
        """
        # The batch-script values load only for ezpz submit, not on the launch path.
        from ezpz.model.batch import BatchHeader, format_walltime

        lines = [f"#SBATCH --job-name={request.job_name}"]
        if request.account:
            lines.append(f"#SBATCH --account={request.account}")
        if queue:
            limits = settings.queues.get(queue)
            option = (limits.option if limits else None) or settings.queue_option
            lines.append(f"#SBATCH --{option}={queue}")
        lines.append(f"#SBATCH --nodes={request.nodes}")
        # The allocation must hold the ranks the launch line will start.
        if ppn:
            lines.append(f"#SBATCH --ntasks-per-node={ppn}")
        if gpus:
            lines.append(f"#SBATCH --gpus-per-node={gpus}")
        if settings.constraint:
            lines.append(f"#SBATCH --constraint={settings.constraint}")
        lines.append(f"#SBATCH --time={format_walltime(request.walltime)}")
        lines.append(f"#SBATCH --output={request.output or request.job_name + '-%j.out'}")
        if request.warning is not None:
            # B: the batch shell gets the signal and passes it on (see ezpz.submit).
            lines.append(f"#SBATCH --signal=B:{request.warning[0]}@{request.warning[1]}")
        if request.requeue:
            # A requeued run appends to the first run's output instead of replacing it.
            lines += ["#SBATCH --requeue", "#SBATCH --open-mode=append"]
        return BatchHeader("#!/bin/bash", lines)

    def batch_requeue(self, kept: str) -> tuple[str, str]:
        """``scontrol requeue``: the job keeps its id; Slurm counts in ``SLURM_RESTART_COUNT``."""
        return "${SLURM_RESTART_COUNT:-0}", 'scontrol requeue "$SLURM_JOB_ID"'
