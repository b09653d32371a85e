"""Resolution: from a spec's layers and this machine's facts to a :class:`~ezpz.model.plan.Plan`.

This is the impure half of the launch path.  :func:`choose` is the one
resolver of ``ezpz launch``, ``ezpz submit`` and ``ezpz doctor``: it stacks the
layers (:mod:`ezpz.launch.layers`), finds the template, picks the scheduler
(:func:`ezpz.plugins.registry.pick`) and builds the spec.  :func:`resolve`
adds the job's allocation and this machine's facts (the hostfile, and only
when nothing else says, the accelerator probe); :func:`plan_launch` hands
everything to the adapter's pure ``render``.  Nothing here imports torch,
mpi4py or wandb, or runs ``qstat`` or ``scontrol``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ezpz.errors import SchedulerError, plural
from ezpz.launch.layers import with_env, with_template
from ezpz.launch.machine import Machine
from ezpz.launch.shim import RANK_SHIM
from ezpz.launch.templates import find_template, templates_for_host
from ezpz.log import get_logger
from ezpz.model.allocation import Allocation
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec, Layer, merge_layers
from ezpz.model.template import Template
from ezpz.plugins.manager import schedulers
from ezpz.plugins.registry import pick
from ezpz.schedulers.base import Scheduler
from ezpz.schedulers.hosts import read_host_set, read_hostfile
from ezpz.schedulers.placement import select_hosts

__all__ = ["Choice", "Resolved", "choose", "describe", "plan_launch", "resolve"]

log = get_logger("ezpz.launch")


@dataclasses.dataclass(frozen=True)
class Choice:
    """A spec merged with its template, and the adapter chosen for it.

    Attributes:
        spec: the merged, validated spec (its provenance says where each value came from).
        adapter: the scheduler adapter chosen.
        template: the template applied (named by a layer, or matched by hostname), or ``None``.
    """

    spec: LaunchSpec
    adapter: Scheduler
    template: Template | None


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A spec merged with its template, the adapter chosen, and the job's allocation."""

    spec: LaunchSpec
    adapter: Scheduler
    allocation: Allocation


def choose(
    layers: Sequence[Layer],
    environ: Mapping[str, str] | None = None,
    machine: Machine | None = None,
    *,
    batch: bool = False,
) -> Choice:
    """Stack ``layers`` with the environment and template, pick the adapter and build the spec.

    ``batch`` picks among adapters that write batch scripts (``ezpz submit``).
    A template is matched by hostname only when no layer names one.
    """
    env = os.environ if environ is None else environ
    here = Machine.here() if machine is None else machine
    user = with_env(layers, env)
    wanted, sources = merge_layers(user)
    template = find_template(str(wanted["template"])) if wanted.get("template") else None
    adapter, why = pick(schedulers(), env, wanted.get("scheduler"), template=template, batch=batch, which=here.which)
    if why == "chosen":
        why = sources["scheduler"]
    auto = None
    if template is None:
        found = templates_for_host(here.hostname, adapter.name)
        if found is not None:
            template, pattern = found
            auto = f"auto: host {here.hostname} matches {pattern!r}"
    spec = LaunchSpec.from_layers(with_template(user, template, auto))
    spec._provenance.setdefault("scheduler", why)
    return Choice(spec, adapter, template)


def resolve(
    layers: Sequence[Layer], environ: Mapping[str, str] | None = None, machine: Machine | None = None
) -> Resolved:
    """Choose adapter and template (:func:`choose`), then read the allocation and this machine's facts."""
    env = os.environ if environ is None else environ
    here = Machine.here() if machine is None else machine
    choice = choose(layers, env, here)
    spec, adapter = choice.spec, choice.adapter
    try:
        alloc = adapter.allocation(env)
    except SchedulerError:
        # Outside the scheduler's job a hostfile alone says where to run.
        if spec.hostfile is None:
            raise
        alloc = Allocation(scheduler=adapter.name, hosts=())
    updates: dict[str, Any] = {
        "tmpdir": here.tmp_dir,
        "python": here.python,
        "shim": str(RANK_SHIM),
        "cpus": here.cores(env),
    }
    if spec.hostfile is not None:
        listed = read_hostfile(spec.hostfile)
        updates.update(
            hosts=listed.hosts, slots=listed.slots, hostfile=str(spec.hostfile), source=f"hostfile {spec.hostfile}"
        )
    if spec.accelerators_per_node is None and alloc.accelerators is None:
        updates["accelerators"], probe = here.probe()
        spec._provenance["accelerators_per_node"] = f"probe: {probe}"
    return Resolved(spec, adapter, _select(spec, dataclasses.replace(alloc, **updates)))


def _select(spec: LaunchSpec, alloc: Allocation) -> Allocation:
    """Leave out the hosts ``--exclude-hosts`` / ``--include-hosts`` / ``--spare-nodes`` say (before counting)."""
    if not (spec.exclude_hosts or spec.include_hosts or spec.spare_nodes):
        return alloc
    selection = select_hosts(
        alloc,
        exclude=read_host_set(spec.exclude_hosts, "--exclude-hosts") if spec.exclude_hosts else (),
        include=read_host_set(spec.include_hosts, "--include-hosts") if spec.include_hosts else None,
        spares=spec.spare_nodes,
    )
    for warning in selection.warnings:
        log.warning("%s", warning)
    return selection.allocation


def plan_launch(
    spec: LaunchSpec | Sequence[Layer], environ: Mapping[str, str] | None = None, machine: Machine | None = None
) -> Plan:
    """Resolve ``spec`` (a spec, or its layers lowest first) on ``machine`` (default: this one) and render it."""
    if isinstance(spec, LaunchSpec):
        layers = spec._layers or [("python", spec.model_dump(exclude_unset=True))]
    else:
        layers = list(spec)
    here = Machine.here() if machine is None else machine
    resolved = resolve(layers, environ, here)
    final = resolved.spec
    if final.master_port is None:
        # Each launch gets its own port so two jobs on one host never collide.
        provenance = final.provenance
        final = final.model_copy(update={"master_port": here.port()})
        final._provenance = {**provenance, "master_port": "free port on this host"}
    return resolved.adapter.render(final, resolved.allocation)


def _left_out_rows(plan: Plan, max_hosts: int) -> list[tuple[str, str, str]]:
    """One dry-run row per reason hosts were left out: how many, which (the first ``max_hosts``)."""
    by_reason: dict[str, list[str]] = {}
    for host, why in plan.left_out:
        by_reason.setdefault(why, []).append(host)
    rows = []
    for why, hosts in by_reason.items():
        more = f", … ({len(hosts)} hosts)" if len(hosts) > max_hosts else ""
        rows.append(("left out", ", ".join(hosts[:max_hosts]) + more, why))
    return rows


def describe(plan: Plan, max_hosts: int = 8) -> str:
    """Return the human dry run: where each value came from, the env, then the command."""
    shown = ", ".join(plan.hosts[:max_hosts]) + (f", … ({plan.nhosts} hosts)" if plan.nhosts > max_hosts else "")
    prov = plan.provenance
    rows = [
        ("scheduler", plan.scheduler, prov.get("scheduler", "")),
        ("template", plan.template or "-", prov.get("template", "")),
        ("launcher", plan.launcher, prov.get("launcher", "")),
        ("np", str(plan.np), prov.get("np", "")),
        ("ppn", str(plan.ppn), prov.get("ppn", "")),
        ("nhosts", str(plan.nhosts), prov.get("nhosts", "")),
        ("hosts", shown, prov.get("hosts", "")),
    ]
    named = {r[0] for r in rows} | {"command", "env"}
    rows += [(key, str(plan.spec.get(key, "")), source) for key, source in prov.items() if key not in named]
    rows += [(f"env {k}", v, "") for k, v in plan.env.items()]
    rows += [(f"writes {path}", plural(len(content.splitlines()), "host"), "") for path, content in plan.files]
    rows += _left_out_rows(plan, max_hosts)
    width = max(len(r[0]) for r in rows)
    lines = [f"# {name:<{width}}  {value}" + (f"   [{source}]" if source else "") for name, value, source in rows]
    return "\n".join([*lines, str(plan)])
