"""What a scheduler gave a job (:class:`Allocation`) and how one launch uses it (:class:`Layout`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Allocation", "Layout"]


@dataclass(frozen=True)
class Allocation:
    """What the scheduler gave this job.

    Attributes:
        scheduler: adapter name.
        hosts: the job's hosts, in order.
        job_id: the scheduler's job id, or ``None``.
        hostfile: a file already listing ``hosts`` (``$PBS_NODEFILE``), or ``None``.
        slots: ranks each host may run, when the scheduler says (Slurm's
            ``--ntasks-per-node``, a hostfile's ``host:N``); same order as ``hosts``.
        accelerators: accelerators per host the scheduler or a probe reports,
            or ``None`` when unknown.
        source: where the hosts were read from, for the dry run.
        tmpdir: directory for files a launch writes (subset hostfiles).
        python: the Python that runs ezpz.
        shim: the per-rank shell shim (``sh <shim> CMD``), ``ezpz/launch/rank.sh``.
        cpus: cores per host (the ranks' default ``OMP_NUM_THREADS``), or ``None``.
        spares: hosts held back for node failover (``--spare-nodes``), in order.
        spare_slots: slots of ``spares``, when ``slots`` is known.
        left_out: (host, why) for every job host not in ``hosts``
            (``--exclude-hosts``, ``--include-hosts``, spares, failed hosts).
    """

    scheduler: str
    hosts: tuple[str, ...]
    job_id: str | None = None
    hostfile: str | None = None
    slots: tuple[int, ...] | None = None
    accelerators: int | None = None
    source: str = ""
    tmpdir: str = "/tmp"
    python: str = "python3"
    # issue #12: run supervision
    shim: str = "rank.sh"
    cpus: int | None = None
    # issue #14: host selection (ezpz.schedulers.placement)
    spares: tuple[str, ...] = ()
    spare_slots: tuple[int, ...] | None = None
    left_out: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Layout:
    """Counts and hosts of one launch, with the rule behind each value."""

    np: int
    ppn: int
    nhosts: int
    hosts: tuple[str, ...]
    accelerators: int
    provenance: dict[str, str] = field(default_factory=dict)
