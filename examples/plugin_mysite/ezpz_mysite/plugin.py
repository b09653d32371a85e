"""The hooks ezpz calls: a scheduler adapter, a template directory, a doctor check.

MySite's batch system (MBS) starts every job with three variables:

* ``MYSITE_JOB_ID``: the job id (``4711.mbs``);
* ``MYSITE_NODEFILE``: a file listing the job's hosts, one per line, in order;
* ``MYSITE_GPUS_PER_NODE``: accelerators on each host (optional).

Its nodes run MPICH, so the adapter renders the ``hydra`` dialect of
``mpiexec``; everything else (counting, hostfiles, MASTER_ADDR/PORT, the
per-rank shim) is the shared rendering of :class:`ezpz.schedulers.base.Scheduler`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ezpz.errors import SchedulerError
from ezpz.model.allocation import Allocation
from ezpz.model.checks import Check, CheckResult, DoctorContext
from ezpz.plugins.hookspecs import hookimpl
from ezpz.plugins.registry import SchedulerRegistry
from ezpz.schedulers.base import Scheduler
from ezpz.schedulers.hosts import read_hostfile

__all__ = ["MySite", "ezpz_doctor_checks", "ezpz_register_schedulers", "ezpz_template_dirs"]


class MySite(Scheduler):
    """Jobs of the MySite Batch System; MPICH ``mpiexec`` (hydra)."""

    name = "mysite"
    default_launcher = "hydra"

    def affinity(self, environ: Mapping[str, str]) -> int:
        """2 inside an MBS job (job id and nodefile), 1 with only one of them, else -1."""
        have = bool(environ.get("MYSITE_JOB_ID")) + bool(environ.get("MYSITE_NODEFILE"))
        return {2: 2, 1: 1}.get(have, -1)

    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Read the job's hosts from ``$MYSITE_NODEFILE``; never call the scheduler."""
        nodefile = environ.get("MYSITE_NODEFILE")
        if not nodefile:
            raise SchedulerError(
                "MYSITE_NODEFILE is not set", None, "run inside an MBS job (mbs-run -I) or pass --hostfile"
            )
        listed = read_hostfile(nodefile)
        gpus = environ.get("MYSITE_GPUS_PER_NODE", "")
        return Allocation(
            scheduler=self.name,
            hosts=listed.hosts,
            job_id=environ.get("MYSITE_JOB_ID") or None,
            hostfile=nodefile,
            slots=listed.slots,
            accelerators=int(gpus) if gpus.isdigit() else None,
            source=f"MYSITE_NODEFILE={nodefile}",
        )


@hookimpl
def ezpz_register_schedulers(registry: SchedulerRegistry) -> None:
    """Add the MySite adapter (``--scheduler mysite``; detected inside an MBS job)."""
    registry.add(MySite)


@hookimpl
def ezpz_template_dirs() -> list[Path]:
    """Ship ``templates/mysite.toml`` (``ezpz launch -t mysite``)."""
    return [Path(__file__).parent / "templates"]


def check_nodefile(ctx: DoctorContext) -> CheckResult:
    """Inside an MBS job, the nodefile must exist and list at least one host."""
    name = "mysite nodefile"
    if not ctx.environ.get("MYSITE_JOB_ID"):
        return CheckResult(name, "ok", "not inside an MBS job; nothing to check")
    nodefile = ctx.environ.get("MYSITE_NODEFILE", "")
    if not nodefile or not os.path.isfile(nodefile):
        return CheckResult(
            name,
            "error",
            f"MYSITE_NODEFILE is missing or unreadable ({nodefile!r})",
            "ask MySite support: the job prologue failed",
        )
    hosts = read_hostfile(nodefile).hosts
    return CheckResult(name, "ok", f"{len(hosts)} host(s) in {nodefile}", "", {"hosts": list(hosts)})


@hookimpl
def ezpz_doctor_checks() -> list[Check]:
    """Add the nodefile check to ``ezpz doctor``."""
    return [Check("mysite nodefile", check_nodefile)]
