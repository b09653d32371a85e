"""The scheduler adapter contract, and the rendering every adapter shares.

An adapter answers three questions:

* ``affinity(environ) -> int``: am I active here?  -1 no, 0 fallback, 1
  maybe, 2 yes.  The highest score wins.
* ``allocation(environ) -> Allocation``: what did the scheduler give this job?
  Read from the environment only: never torch, never ``qstat``/``scontrol``.
* ``render(spec, allocation) -> Plan``: the argv that launches ``spec`` here.
  Pure: same inputs, same plan.

An adapter with a batch system also sets ``submit_argv`` and implements
``batch_header`` (its ``#PBS`` / ``#SBATCH`` lines) for ``ezpz submit``.

Counting (:func:`ezpz.schedulers.counting.layout`) and the MPI dialects
(:mod:`ezpz.schedulers.dialects`) are shared, so an adapter usually implements
only the first two.  Values live in :mod:`ezpz.model`; the registry of
adapters and the choice among them in :mod:`ezpz.plugins.registry`.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ezpz.errors import SchedulerError, SpecError
from ezpz.model.allocation import Allocation, Layout
from ezpz.model.console import parse_ranks
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec
from ezpz.schedulers.counting import cpu_bind_note, cut_cpu_bind, layout
from ezpz.schedulers.devices import device_plan_env
from ezpz.schedulers.dialects import Parts, dialect
from ezpz.schedulers.placement import replace_host

if TYPE_CHECKING:
    # Typing only: the batch-script values load only for ezpz submit.
    from ezpz.model.batch import BatchHeader, SubmitRequest, SubmitSettings

__all__ = ["Scheduler"]


class Scheduler(ABC):
    """Base class of scheduler adapters.

    Subclasses set :attr:`name` and :attr:`default_launcher` and implement
    :meth:`affinity` and :meth:`allocation`; :meth:`render` is shared.
    """

    name: ClassVar[str] = ""
    default_launcher: ClassVar[str] = "hydra"
    #: The command that submits a batch script (its path is appended); empty: no batch system.
    submit_argv: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def affinity(self, environ: Mapping[str, str]) -> int:
        """Return -1 (not here), 0 (fallback), 1 (maybe) or 2 (inside this scheduler's job)."""

    @abstractmethod
    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Read the job's hosts and slots from ``environ``."""

    def render(self, spec: LaunchSpec, allocation: Allocation) -> Plan:
        """Return the :class:`~ezpz.model.plan.Plan` that launches ``spec`` on ``allocation``.  Pure."""
        if not spec.command:
            raise SpecError("no command to launch", None, "put it after --: ezpz launch -- python train.py")
        launcher = spec.launcher or self.default_launcher
        writer = dialect(launcher, spec.provenance.get("launcher"))
        lay = layout(spec, allocation)
        subset, hostfile, files = _hostfile(spec, allocation, lay, launcher)
        env, mask_note = _rank_env(spec, allocation, lay)
        supervise = spec.rank_env
        shim, labels = _supervision(spec, allocation, lay, launcher, writer.labels, env) if supervise else ([], [])
        if spec.ranks is not None:
            parse_ranks(spec.ranks, lay.np)
        parts = Parts(
            lay=lay,
            hostfile=hostfile,
            subset=subset,
            cpu_bind=cut_cpu_bind(spec.cpu_bind, lay.ppn),
            flags=labels + list(spec.launcher_flags),
            env=env,
            tail=shim + list(spec.command),
            oversubscribe=spec.oversubscribe,
            supervise=supervise,
        )
        return Plan(
            argv=tuple(writer.argv(parts)),
            env=env,
            np=lay.np,
            ppn=lay.ppn,
            nhosts=lay.nhosts,
            hosts=lay.hosts,
            scheduler=self.name,
            launcher=launcher,
            template=spec.template,
            provenance=_provenance(self.name, spec, allocation, lay, mask_note),
            files=files,
            timeout=spec.timeout,
            retries=spec.retries,
            stop_grace=spec.stop_grace,
            spec={**spec.model_dump(mode="json", exclude={"command"}), "accelerators_per_node": lay.accelerators},
            left_out=allocation.left_out,
            spares=allocation.spares,
            supervise=supervise,
            tag=spec.tag,
            console_ranks=spec.ranks,
            run_dir=None if spec.run_dir is None else str(spec.run_dir),
            failover=functools.partial(_render_without, self, spec, allocation) if spec.spare_nodes else None,
        )

    def batch_header(
        self, request: SubmitRequest, settings: SubmitSettings, queue: str | None, ppn: int | None, gpus: int | None
    ) -> BatchHeader:
        """Return this scheduler's part of a batch script for ``request``.  Pure.

        ``queue`` is the checked queue (or ``None``); ``ppn`` and ``gpus``, when
        known, are the ranks and accelerators per node the launch line needs.
        Adapters that set :attr:`submit_argv` override this.
        """
        raise SchedulerError(f"the {self.name} scheduler has no batch system to submit to", self.name)

    # issue 15: the warning before the walltime, and requeue
    #: The batch system sends no signal before the walltime ends, so the
    #: script times the warning itself.
    batch_times_warning: ClassVar[bool] = False

    def batch_requeue(self, kept: str) -> tuple[str, str]:
        """Shell for a job that requeues itself: (its earlier requeues, the command that requeues it).

        ``kept`` is the file name, in the submission directory, under which
        ``ezpz submit`` keeps the script for a batch system that requeues by
        submitting it again.  Adapters that can requeue override this.
        """
        raise SchedulerError(f"the {self.name} scheduler cannot requeue a job", "--requeue", "submit without --requeue")


def _hostfile(
    spec: LaunchSpec, allocation: Allocation, lay: Layout, launcher: str
) -> tuple[bool, str | None, tuple[tuple[str, str], ...]]:
    """Whether the launch uses a subset of the job's hosts, the hostfile to pass, and files to write.

    The job's own hostfile is reused when every host is used; otherwise a
    subset hostfile named by its content goes to the allocation's tmpdir.
    """
    # srun must be told which nodes a hostfile names (it has no hostfile flag).
    subset = (
        lay.nhosts < len(allocation.hosts)
        or bool(allocation.left_out)
        or (launcher == "srun" and spec.hostfile is not None)
    )
    if launcher == "srun" or not (subset or allocation.hostfile or spec.hostfile):
        return subset, None, ()
    if not subset and allocation.hostfile:
        return subset, allocation.hostfile, ()
    content = "".join(f"{h}\n" for h in lay.hosts)
    digest = hashlib.sha1(content.encode()).hexdigest()[:12]
    hostfile = f"{allocation.tmpdir}/ezpz-hosts-{allocation.job_id or 'local'}-{digest}"
    return subset, hostfile, ((hostfile, content),)


def _rank_env(spec: LaunchSpec, allocation: Allocation, lay: Layout) -> tuple[dict[str, str], str]:
    """The variables every rank gets (rendezvous, launch id, the user's, device masks) and the mask's note."""
    port = spec.master_port or 29500
    env = {
        "MASTER_ADDR": lay.hosts[0],
        "MASTER_PORT": str(port),
        "EZPZ_LAUNCH_ID": f"{allocation.job_id or 'local'}-{port}",
        "EZPZ_LOCAL_WORLD_SIZE": str(lay.ppn),
        **spec.env,
    }
    masks, mask_note = device_plan_env(
        spec.device_mask,
        ppn=lay.ppn,
        accelerators=lay.accelerators,
        env=spec.env,
        rank_env=spec.rank_env,
        source=spec.provenance.get("device_mask", "spec"),
    )
    return {**env, **masks}, mask_note


def _supervision(
    spec: LaunchSpec, allocation: Allocation, lay: Layout, launcher: str, labels: Sequence[str], env: dict[str, str]
) -> tuple[list[str], list[str]]:
    """Run supervision (#12): the shell shim on every rank and the launcher's line-label flags.

    Adds the shim's variables to ``env``; srun also gets ``--kill-on-bad-exit=1``
    (stop the step when a task fails) unless the flags already choose.
    """
    env["EZPZ_DUMP_SIGNAL"] = "ALRM"
    if allocation.cpus:
        env.setdefault("EZPZ_OMP_NUM_THREADS", str(max(1, allocation.cpus // lay.ppn)))
    flags = list(labels)
    if launcher == "srun" and not any(f.startswith(("--kill-on-bad-exit", "-K")) for f in spec.launcher_flags):
        flags.append("--kill-on-bad-exit=1")
    return ["sh", allocation.shim], flags


def _provenance(
    scheduler: str, spec: LaunchSpec, allocation: Allocation, lay: Layout, mask_note: str
) -> dict[str, str]:
    """Where each of the plan's values came from: the spec's layers, the counting, the allocation, the defaults."""
    return {
        **spec.provenance,
        **lay.provenance,
        **_cpu_bind_provenance(spec, lay.ppn),
        "hosts": allocation.source,
        "launcher": spec.provenance.get("launcher", f"default for {scheduler}"),
        **({"device_mask": mask_note} if spec.device_mask else {}),
    }


def _cpu_bind_provenance(spec: LaunchSpec, ppn: int) -> dict[str, str]:
    note = cpu_bind_note(spec.cpu_bind, ppn)
    if note is None:
        return {}
    return {"cpu_bind": f"{spec.provenance.get('cpu_bind', 'spec')}; {note}"}


def _render_without(adapter: Scheduler, spec: LaunchSpec, allocation: Allocation, bad: str, why: str) -> Plan:
    """Render ``spec`` again with ``bad`` replaced by a spare (a plan's ``failover``)."""
    return adapter.render(spec, replace_host(allocation, bad, why))
