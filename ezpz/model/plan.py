"""The rendered launch: frozen data, printable and serialisable.

A :class:`Plan` is what a scheduler adapter's ``render`` returns and what
:mod:`ezpz.launch.execute` runs.  ``str(plan)`` is the shell-quoted command
(``shlex.split(str(plan)) == list(plan.argv)``); :meth:`Plan.to_json` is the
machine-readable dry run.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """A launch, ready to run.

    Attributes:
        argv: the launcher command line, the user's command at its end.
        env: variables ezpz adds to the launcher's environment (the ranks
            inherit them): ``MASTER_ADDR``, ``MASTER_PORT``, template and
            ``-x`` variables.
        np: total ranks.
        ppn: ranks per host.
        nhosts: hosts used.
        hosts: the hosts used, in order.
        scheduler: adapter that rendered the plan (``pbs``, ``slurm``, ``local``, ...).
        launcher: MPI dialect (``pals``, ``hydra``, ``openmpi``, ``srun``).
        template: template applied, or ``None``.
        provenance: for each value, the layer or rule that set it.
        files: files :mod:`ezpz.launch.execute` writes before starting (path, content),
            such as the hostfile of a subset launch.
        timeout: idle-watchdog seconds, or ``None``.
        retries: re-runs of a failed launch.
        stop_grace: seconds the ranks get to save after a SIGTERM before SIGKILL.
        spec: the resolved spec's fields (JSON-compatible), for the dry run.
        left_out: (host, why) for each host of the job the launch does not
            use: excluded, not included, held as a spare, or failed.
        spares: hosts held back for node failover, in order.
        failover: ``failover(host, why)`` renders this launch again with
            ``host`` replaced by the first spare (``None`` without
            ``--spare-nodes``); it raises :class:`~ezpz.errors.LaunchError`
            naming the failed hosts when no spare is left.  Not data: left out
            of comparisons and of :meth:`to_dict`.
        supervise: run it under :mod:`ezpz.launch.supervise` (labelled lines, run
            directory, failure summary); true when the ranks run the shim.
        tag: label console lines with their rank.
        console_ranks: ranks the console shows (``"0,2-3"``, ``"all"``), or
            ``None`` for the default rule.
        run_dir: the run directory, or ``None`` for the default.
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    np: int
    ppn: int
    nhosts: int
    hosts: tuple[str, ...]
    scheduler: str
    launcher: str
    template: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    files: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    retries: int = 0
    stop_grace: float = 30.0
    spec: dict[str, Any] = field(default_factory=dict)
    # issue #14: host selection and node failover
    left_out: tuple[tuple[str, str], ...] = ()
    spares: tuple[str, ...] = ()
    failover: Callable[[str, str], Plan] | None = field(default=None, compare=False, repr=False)
    # Run supervision (issue #12).
    supervise: bool = False
    tag: bool = True
    console_ranks: str | None = None
    run_dir: str | None = None

    def __str__(self) -> str:
        """Return the shell-quoted command line."""
        return shlex.join(self.argv)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as plain JSON-compatible data."""
        return {
            "scheduler": self.scheduler,
            "launcher": self.launcher,
            "template": self.template,
            "np": self.np,
            "ppn": self.ppn,
            "nhosts": self.nhosts,
            "hosts": list(self.hosts),
            "argv": list(self.argv),
            "command": str(self),
            "env": dict(self.env),
            "files": {path: content for path, content in self.files},
            "timeout": self.timeout,
            "retries": self.retries,
            "stop_grace": self.stop_grace,
            "provenance": dict(self.provenance),
            "spec": dict(self.spec),
            "left_out": dict(self.left_out),
            "spares": list(self.spares),
            "supervise": self.supervise,
            "tag": self.tag,
            "console_ranks": self.console_ranks,
            "run_dir": self.run_dir,
        }

    def to_json(self, indent: int | None = None) -> str:
        """Return :meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)
