"""PBS Pro (Aurora, Sunspot, Polaris, Sophia): hosts from ``$PBS_NODEFILE``.

Never runs ``qstat``: compute nodes often lack it, and the nodefile already
lists the job's hosts in order.  Slurm variables left in the environment are
ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ezpz.errors import SchedulerError
from ezpz.model.allocation import Allocation
from ezpz.schedulers.base import Scheduler

if TYPE_CHECKING:
    from ezpz.model.batch import BatchHeader, SubmitRequest, SubmitSettings
from ezpz.schedulers.hosts import read_hostfile


class PBS(Scheduler):
    """PBS Pro jobs; PALS ``mpiexec`` by default."""

    name = "pbs"
    default_launcher = "pals"
    submit_argv = ("qsub",)

    def affinity(self, environ: Mapping[str, str]) -> int:
        """2 inside a PBS job (``PBS_JOBID`` and ``PBS_NODEFILE``), 1 with one of them, else -1."""
        have = bool(environ.get("PBS_JOBID")) + bool(environ.get("PBS_NODEFILE"))
        return {2: 2, 1: 1}.get(have, -1)

    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Read the hosts from ``$PBS_NODEFILE`` (one per line, in order)."""
        nodefile = environ.get("PBS_NODEFILE")
        if not nodefile:
            raise SchedulerError(
                "PBS_NODEFILE is not set",
                None,
                "run inside a PBS job (qsub -I ...) or pass --hostfile",
            )
        slots = read_hostfile(nodefile)
        return Allocation(
            scheduler=self.name,
            hosts=slots.hosts,
            job_id=environ.get("PBS_JOBID") or None,
            hostfile=nodefile,
            slots=None,
            source=f"PBS_NODEFILE={nodefile}",
        )

    def batch_header(
        self, request: SubmitRequest, settings: SubmitSettings, queue: str | None, ppn: int | None, gpus: int | None
    ) -> BatchHeader:
        """``#PBS`` lines; PBS allocates whole nodes, so ``ppn`` and ``gpus`` are not asked for.

        PBS starts the job in $HOME with a bare environment: a login shell gives
        it the module command, and the script moves to the submission directory.
        """
        # The batch-script values load only for ezpz submit, not on the launch path.
        from ezpz.model.batch import BatchHeader, format_walltime

        select = f"select={request.nodes}" + (f":system={settings.system}" if settings.system else "")
        lines = [f"#PBS -N {request.job_name}"]
        if request.account:
            lines.append(f"#PBS -A {request.account}")
        if queue:
            lines.append(f"#PBS -q {queue}")
        lines.append(f"#PBS -l {select}")
        if settings.place:
            lines.append(f"#PBS -l place={settings.place}")
        lines.append(f"#PBS -l walltime={format_walltime(request.walltime)}")
        filesystems = request.filesystems or settings.filesystems
        if filesystems:
            lines.append(f"#PBS -l filesystems={filesystems}")
        # One output file, stdout and stderr joined, as users read it.
        lines.append("#PBS -j oe")
        if request.output:
            lines.append(f"#PBS -o {request.output}")
        if request.requeue:
            # Rerunnable: PBS may itself requeue the job (node failure, preemption).
            lines.append("#PBS -r y")
        return BatchHeader("#!/bin/bash -l", lines, ['cd "$PBS_O_WORKDIR"'])

    #: PBS Pro sends no signal before the walltime ends (only SIGTERM at it).
    batch_times_warning = True

    def batch_requeue(self, kept: str) -> tuple[str, str]:
        """The job submits its kept script again: ``qrerun`` needs PBS operator privilege.

        The count travels with each new job as ``EZPZ_REQUEUE_COUNT`` (``qsub -v``).
        """
        return "${EZPZ_REQUEUE_COUNT:-0}", f'qsub -v EZPZ_REQUEUE_COUNT=$((count + 1)) "$PBS_O_WORKDIR/{kept}"'
