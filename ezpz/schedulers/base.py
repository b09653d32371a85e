"""The scheduler adapter contract, and the rendering every adapter shares.

An adapter answers three questions:

* ``affinity(environ) -> int``: am I active here?  -1 no, 0 fallback, 1
  maybe, 2 yes.  The highest score wins.
* ``allocation(environ) -> Allocation``: what did the scheduler give this job?
  Read from the environment only: never torch, never ``qstat``/``scontrol``.
* ``render(spec, allocation) -> Plan``: the argv that launches ``spec`` here.
  Pure: same inputs, same plan.

Counting (:func:`layout`) and the MPI dialects (:data:`DIALECTS`) are shared, so
an adapter usually implements only the first two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ezpz.errors import SchedulerError, SpecError, closest
from ezpz.model.plan import Plan
from ezpz.schedulers.devices import device_plan_env
from ezpz.schedulers.hosts import compress_nodelist

if TYPE_CHECKING:
    from ezpz.model.spec import LaunchSpec

__all__ = [
    "DIALECTS",
    "Allocation",
    "Layout",
    "Scheduler",
    "SchedulerRegistry",
    "cpu_bind_note",
    "cut_cpu_bind",
    "layout",
    "pack_accelerators_first",
    "pick",
]


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
        python: interpreter for the per-rank shim (``python -m ezpz.rankenv``).
        spares: hosts held back for node failover (``--spare-nodes``), in order.
        spare_slots: slots of ``spares``, when ``slots`` is known.
        left_out: (host, why) for every job host not in ``hosts``
            (``--exclude-hosts``, ``--include-hosts``, spares).
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


def _default_ppn(alloc: Allocation, accel: int, how: str) -> tuple[int, str]:
    if accel > 0:
        return accel, f"accelerators per node ({how})"
    if alloc.slots:
        return min(alloc.slots), f"slots per host ({alloc.source})"
    return 1, "cpu-only nodes: 1 rank per node (pass -ppn for more)"


def pack_accelerators_first(np: int, accelerators: int, hosts: int) -> tuple[int, int]:
    """The packing rule for ``-n`` alone on nodes with accelerators: return (nhosts, ppn).

    Use the fewest hosts that hold ``np`` ranks, evenly: ``nhosts = ceil(np /
    accelerators)``, ``ppn = np / nhosts`` (``-n 6`` at 4 per node: 2 × 3).  Raises
    :class:`~ezpz.errors.SpecError` naming the valid choices when ``np`` does not
    split evenly over those hosts or needs more than the job's ``hosts``.
    """
    nhosts = -(-np // accelerators)
    if nhosts <= hosts and np % nhosts == 0:
        return nhosts, np // nhosts
    choices = _packable_near(np, accelerators, hosts)
    exact = [f"-nh {d} -ppn {np // d}" for d in range(1, hosts + 1) if np % d == 0 and np // d <= accelerators]
    valid = ", ".join([*choices, *exact]) or f"-n {accelerators * hosts} or fewer"
    if nhosts > hosts:
        what = f"np={np} needs {nhosts} hosts at {accelerators} accelerators per node, the job has {hosts}"
        more = "; or pass --oversubscribe to put more ranks on each host"
    else:
        what = f"np={np} does not split evenly over the {nhosts} hosts it needs at {accelerators} accelerators per node"
        more = ""
    raise SpecError(what, f"-n {np}", f"valid: {valid}{more}")


def _packable_near(np: int, accelerators: int, hosts: int) -> list[str]:
    """The nearest rank counts below and above ``np`` that the packing rule places evenly."""

    def packs(n: int) -> bool:
        return n % -(-n // accelerators) == 0

    def shown(n: int) -> str:
        nh = -(-n // accelerators)
        return f"-n {n} ({nh} host{'s' if nh > 1 else ''} × {n // nh})"

    top = accelerators * hosts
    below = next((n for n in range(min(np - 1, top), 0, -1) if packs(n)), None)
    above = next((n for n in range(np + 1, top + 1) if packs(n)), None)
    return [shown(n) for n in (below, above) if n is not None]


def layout(spec: LaunchSpec, alloc: Allocation) -> Layout:
    """Decide np, ppn and hosts from ``spec`` and ``alloc``; raise on what cannot fit.

    Rules: with np and ppn, nhosts = np / ppn; with np and nhosts, ppn = np /
    nhosts; with only np, all hosts and ppn = np / hosts; with only nhosts, ppn
    defaults to the accelerators per node (slots, or 1 on CPU-only nodes);
    with nothing, every host at that default.  Fewer hosts than the job uses the
    first ones.
    """
    prov = spec.provenance
    if spec.accelerators_per_node is not None:
        accel, how = spec.accelerators_per_node, prov.get("accelerators_per_node", "spec")
    else:
        accel, how = alloc.accelerators or 0, f"detected: {alloc.accelerators or 0}"
    avail = len(alloc.hosts)
    np, ppn, nh = spec.np, spec.ppn, spec.nhosts
    out: dict[str, str] = {k: prov.get(k, "spec") for k in ("np", "ppn", "nhosts") if getattr(spec, k) is not None}
    if np is not None and ppn is not None:
        nh = np // ppn
        out.setdefault("nhosts", "np / ppn")
    elif np is not None and nh is not None:
        ppn = np // nh
        out["ppn"] = "np / nhosts"
    elif np is not None and accel > 0 and not (spec.oversubscribe and np > accel * avail):
        nh, ppn = pack_accelerators_first(np, accel, avail)
        out["nhosts"] = f"fill accelerators first: ceil(np / {accel} accelerators per node)"
        out["ppn"] = "np / nhosts"
    elif np is not None:
        if np % avail and np > avail:
            raise SpecError(
                f"np={np} is not divisible by the job's {avail} hosts",
                f"-n {np}",
                "give -ppn or -nh too, or a multiple of the host count",
            )
        nh = min(avail, np)
        ppn = np // nh
        out["nhosts"], out["ppn"] = f"np over the job's {avail} hosts", "np / nhosts"
    else:
        if ppn is None:
            ppn, out["ppn"] = _default_ppn(alloc, accel, how)
        if nh is None:
            left = f", {len(alloc.left_out)} left out" if alloc.left_out else ""
            nh, out["nhosts"] = avail, f"all {'usable ' if left else ''}hosts of the job ({alloc.source}{left})"
        np = nh * ppn
        out["np"] = "nhosts × ppn"
    assert nh is not None and ppn is not None
    if nh > avail:
        raise SchedulerError(
            f"more hosts requested than the job has ({avail})",
            f"nhosts={nh}",
            f"use -nh {avail} or fewer; hosts from {alloc.source}",
        )
    if alloc.slots is not None:
        room = min(alloc.slots[:nh])
        if ppn > room and not spec.oversubscribe:
            raise SchedulerError(
                f"more ranks per host than the job's slots ({room})",
                f"np={np} ppn={ppn}",
                f"the job has {sum(alloc.slots)} slots on {avail} hosts; pass --oversubscribe to override",
            )
    if accel > 0 and ppn > accel and not spec.oversubscribe:
        raise SpecError(
            f"ppn exceeds the {accel} accelerators per node",
            f"ppn={ppn}",
            f"accelerators from {how}; use -ppn {accel} or fewer, or pass --oversubscribe",
        )
    return Layout(np=np, ppn=ppn, nhosts=nh, hosts=alloc.hosts[:nh], accelerators=accel, provenance=out)


def _cpu_list(cpu_bind: str | None) -> list[str] | None:
    if cpu_bind is None or not cpu_bind.startswith("list:"):
        return None
    return cpu_bind[len("list:") :].split(":")


def cut_cpu_bind(cpu_bind: str | None, ppn: int) -> str | None:
    """Cut a ``list:a:b:c`` binding to ``ppn`` entries; a shorter list is passed as given.

    A list with fewer entries than ranks per node is valid PALS input (the
    original ezpz passed it through), so it is not refused; :func:`cpu_bind_note`
    says so in the dry run.
    """
    entries = _cpu_list(cpu_bind)
    if entries is None or len(entries) <= ppn:
        return cpu_bind
    return "list:" + ":".join(entries[:ppn])


def cpu_bind_note(cpu_bind: str | None, ppn: int) -> str | None:
    """What :func:`cut_cpu_bind` did to a ``list:`` binding, for the dry run; ``None`` when nothing."""
    entries = _cpu_list(cpu_bind)
    if entries is None or len(entries) == ppn:
        return None
    if len(entries) > ppn:
        return f"list of {len(entries)} entries cut to ppn={ppn}"
    return f"list of {len(entries)} entries for ppn={ppn}: passed as given (fewer entries than ranks per node)"


@dataclass(frozen=True)
class _Parts:
    """What a dialect needs to write its argv."""

    lay: Layout
    hostfile: str | None
    subset: bool
    cpu_bind: str | None
    flags: list[str]
    env: dict[str, str]
    tail: list[str]
    oversubscribe: bool = False


def _pals(p: _Parts) -> list[str]:
    argv = ["mpiexec", "--envall", "--line-buffer", f"--np={p.lay.np}", f"--ppn={p.lay.ppn}"]
    if p.hostfile:
        argv.append(f"--hostfile={p.hostfile}")
    if p.cpu_bind:
        argv.append(f"--cpu-bind={p.cpu_bind}")
    return argv + p.flags + p.tail


def _bind_to(p: _Parts, dialect: str) -> str | None:
    """The cpu binding for hydra/Open MPI, which take -bind-to core|socket|numa|none."""
    if p.cpu_bind and (p.cpu_bind == "depth" or p.cpu_bind.startswith("list:")):
        raise SpecError(
            f"cpu binding is PALS syntax, which {dialect} does not take",
            p.cpu_bind,
            "use core, socket, numa or none (check CPU_BIND / EZPZ_CPU_BIND in your environment)",
        )
    return p.cpu_bind


def _hydra(p: _Parts) -> list[str]:
    argv = ["mpiexec", "-n", str(p.lay.np)]
    # On more than one host hydra must be told the ranks per host (with no hostfile,
    # under Slurm, it would otherwise fill the first host's slots).
    if p.hostfile or p.lay.nhosts > 1:
        argv += ["-ppn", str(p.lay.ppn)]
    if p.hostfile:
        argv += ["--hostfile", p.hostfile]
    if bind := _bind_to(p, "MPICH hydra"):
        argv += ["-bind-to", bind]
    return argv + p.flags + p.tail


def _openmpi(p: _Parts) -> list[str]:
    # Open MPI 5 deprecates -N (it is --map-by ppr:N:node, which then takes no
    # second --map-by), so the count and the oversubscribe modifier share one.
    mapping = f"ppr:{p.lay.ppn}:node" + (":OVERSUBSCRIBE" if p.oversubscribe else "")
    argv = ["mpirun", "-n", str(p.lay.np), "--map-by", mapping]
    if p.hostfile:
        argv += ["--hostfile", p.hostfile]
    if bind := _bind_to(p, "Open MPI"):
        argv += ["--bind-to", bind]
    argv += p.flags
    # Open MPI forwards only the variables named with -x.
    for key in p.env:
        argv += ["-x", key]
    return argv + p.tail


def _srun(p: _Parts) -> list[str]:
    lay = p.lay
    argv = ["srun", "-u", f"-N{lay.nhosts}", f"-n{lay.np}", f"--ntasks-per-node={lay.ppn}"]
    if lay.accelerators > 0:
        argv.append(f"--gpus-per-node={min(lay.ppn, lay.accelerators)}")
    if p.subset:
        argv.append(f"--nodelist={compress_nodelist(lay.hosts)}")
    if p.cpu_bind:
        argv.append(f"--cpu-bind={p.cpu_bind}")
    return argv + p.flags + p.tail


#: MPI dialect name -> argv writer.
DIALECTS: dict[str, Callable[[_Parts], list[str]]] = {
    "pals": _pals,
    "hydra": _hydra,
    "openmpi": _openmpi,
    "srun": _srun,
}


class Scheduler:
    """Base class of scheduler adapters.

    Subclasses set :attr:`name` and :attr:`default_launcher` and implement
    :meth:`affinity` and :meth:`allocation`; :meth:`render` is shared.
    """

    name: ClassVar[str] = ""
    default_launcher: ClassVar[str] = "hydra"

    def affinity(self, environ: Mapping[str, str]) -> int:
        """Return -1 (not here), 0 (fallback), 1 (maybe) or 2 (inside this scheduler's job)."""
        raise NotImplementedError

    def allocation(self, environ: Mapping[str, str]) -> Allocation:
        """Read the job's hosts and slots from ``environ``."""
        raise NotImplementedError

    def render(self, spec: LaunchSpec, allocation: Allocation) -> Plan:
        """Return the :class:`~ezpz.model.plan.Plan` that launches ``spec`` on ``allocation``.  Pure."""
        if not spec.command:
            raise SpecError("no command to launch", None, "put it after --: ezpz launch -- python train.py")
        lay = layout(spec, allocation)
        launcher = spec.launcher or self.default_launcher
        # srun must be told which nodes a hostfile names (it has no hostfile flag).
        subset = (
            lay.nhosts < len(allocation.hosts)
            or bool(allocation.left_out)
            or (launcher == "srun" and spec.hostfile is not None)
        )
        files: tuple[tuple[str, str], ...] = ()
        hostfile: str | None = None
        if launcher != "srun" and (subset or allocation.hostfile or spec.hostfile):
            if not subset and allocation.hostfile:
                hostfile = allocation.hostfile
            else:
                content = "".join(f"{h}\n" for h in lay.hosts)
                digest = hashlib.sha1(content.encode()).hexdigest()[:12]
                hostfile = f"{allocation.tmpdir}/ezpz-hosts-{allocation.job_id or 'local'}-{digest}"
                files = ((hostfile, content),)
        port = spec.master_port or 29500
        launch_id = f"{allocation.job_id or 'local'}-{port}"
        env = {
            "MASTER_ADDR": lay.hosts[0],
            "MASTER_PORT": str(port),
            "EZPZ_LAUNCH_ID": launch_id,
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
        env.update(masks)
        shim = [allocation.python, "-m", "ezpz.rankenv"] if spec.rank_env else []
        parts = _Parts(
            lay=lay,
            hostfile=hostfile,
            subset=subset,
            cpu_bind=cut_cpu_bind(spec.cpu_bind, lay.ppn),
            flags=list(spec.launcher_flags),
            env=env,
            tail=shim + list(spec.command),
            oversubscribe=spec.oversubscribe,
        )
        provenance = {
            **spec.provenance,
            **lay.provenance,
            **_cpu_bind_provenance(spec, lay.ppn),
            "hosts": allocation.source,
            "launcher": spec.provenance.get("launcher", f"default for {self.name}"),
            **({"device_mask": mask_note} if spec.device_mask else {}),
        }
        return Plan(
            argv=tuple(DIALECTS[launcher](parts)),
            env=env,
            np=lay.np,
            ppn=lay.ppn,
            nhosts=lay.nhosts,
            hosts=lay.hosts,
            scheduler=self.name,
            launcher=launcher,
            template=spec.template,
            provenance=provenance,
            files=files,
            timeout=spec.timeout,
            retries=spec.retries,
            spec={**spec.model_dump(mode="json", exclude={"command"}), "accelerators_per_node": lay.accelerators},
            left_out=allocation.left_out,
            spares=allocation.spares,
        )


def _cpu_bind_provenance(spec: LaunchSpec, ppn: int) -> dict[str, str]:
    note = cpu_bind_note(spec.cpu_bind, ppn)
    if note is None:
        return {}
    return {"cpu_bind": f"{spec.provenance.get('cpu_bind', 'spec')}; {note}"}


class SchedulerRegistry:
    """Scheduler classes by name; built-ins cannot be replaced by plugins."""

    def __init__(self) -> None:
        """Start empty; :func:`ezpz.plugins.manager.schedulers` fills it."""
        self._classes: dict[str, type[Scheduler]] = {}
        self._builtin: set[str] = set()
        self.builtin = False
        self.refused: list[str] = []

    def add(self, cls: type[Scheduler]) -> None:
        """Register ``cls`` under ``cls.name``; a name a built-in holds is refused."""
        if not cls.name:
            raise SchedulerError("scheduler class has no name", cls.__qualname__, "set the class attribute name")
        if cls.name in self._builtin:
            self.refused.append(f"{cls.__module__}.{cls.__qualname__}")
            return
        self._classes[cls.name] = cls
        if self.builtin:
            self._builtin.add(cls.name)

    def instances(self) -> dict[str, Scheduler]:
        """Return one instance of every registered adapter."""
        return {name: cls() for name, cls in self._classes.items()}


def pick(adapters: Mapping[str, Scheduler], environ: Mapping[str, str], name: str | None) -> tuple[Scheduler, str]:
    """Choose the adapter named ``name``, else the one with the highest affinity.

    Returns the adapter and why it was chosen.
    """
    if name is not None:
        if name not in adapters:
            raise SchedulerError("unknown scheduler", name, closest(name, adapters))
        return adapters[name], "chosen"
    scores = {n: a.affinity(environ) for n, a in adapters.items()}
    best = max(scores.values())
    top = [n for n, s in scores.items() if s == best]
    if best >= 2 and len(top) > 1:
        raise SchedulerError("more than one scheduler job detected", ", ".join(top), "pass --scheduler NAME")
    if best < 0:
        raise SchedulerError("no scheduler adapter is active", None, "pass --scheduler local")
    chosen = top[0]
    return adapters[chosen], f"detected (affinity {best})"
