"""No scheduler: this machine only, MPICH hydra ``mpiexec`` by default."""

from __future__ import annotations

from collections.abc import Mapping

from ezpz.model.allocation import Allocation
from ezpz.schedulers.base import Scheduler


class Local(Scheduler):
    """The fallback adapter: one host, ``localhost``."""

    name = "local"
    default_launcher = "hydra"

    def affinity(self, environ: Mapping[str, str]) -> int:
        """Always 0: used when no scheduler job is detected."""
        return 0

    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Return this machine, as ``localhost``."""
        return Allocation(scheduler=self.name, hosts=("localhost",), source="this machine")
