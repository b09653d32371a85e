"""Resolution: from a spec's layers and this machine's facts to a :class:`~ezpz.model.plan.Plan`.

This is the impure half of the launch path: it reads the environment, the
hostname, the hostfile and (only when nothing else says) probes for
accelerators, then hands everything to the adapter's pure ``render``.  It never
imports torch, mpi4py or wandb, and never runs ``qstat`` or ``scontrol``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ezpz.errors import SchedulerError
from ezpz.launch.templates import find_template, templates_for_host
from ezpz.log import get_logger
from ezpz.model.allocation import Allocation
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec, Layer, env_layer, merge_layers
from ezpz.plugins.manager import schedulers
from ezpz.plugins.registry import pick
from ezpz.schedulers.base import Scheduler
from ezpz.schedulers.hosts import read_host_set, read_hostfile
from ezpz.schedulers.placement import select_hosts

__all__ = ["Resolved", "describe", "free_port", "plan_launch", "probe_accelerators", "resolve"]

log = get_logger("ezpz.launch")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A spec merged with its template, the adapter chosen, and the job's allocation."""

    spec: LaunchSpec
    adapter: Scheduler
    allocation: Allocation


def probe_accelerators() -> tuple[int, str]:
    """Count this node's accelerators without importing torch.

    Tries ``nvidia-smi -L`` (NVIDIA), ``rocm-smi`` device files (AMD) and
    ``/dev/dri/renderD*`` (Intel); 0 means a CPU-only node.
    """
    from ezpz.launch.execute import capture

    if shutil.which("nvidia-smi"):
        out = capture(["nvidia-smi", "-L"], timeout=10)
        count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        if count:
            return count, "nvidia-smi -L"
    kfd = glob.glob("/dev/dri/renderD*")
    if os.path.exists("/dev/kfd") and kfd:
        return len(kfd), "/dev/kfd + /dev/dri"
    if kfd:
        return len(kfd), "/dev/dri/renderD*"
    return 0, "no accelerator found"


def _user_layers(layers: Sequence[Layer], environ: Mapping[str, str]) -> list[Layer]:
    """Insert the EZPZ_* environment layer after config files, unless present."""
    if any(name == "env" for name, _ in layers):
        return list(layers)
    cut = sum(1 for name, _ in layers if name.startswith("config:"))
    return [*layers[:cut], ("env", env_layer(environ)), *layers[cut:]]


def resolve(layers: Sequence[Layer], environ: Mapping[str, str] | None = None) -> Resolved:
    """Choose adapter and template, merge all layers, and read the allocation."""
    env = os.environ if environ is None else environ
    user = _user_layers(layers, env)
    wanted, sources = merge_layers(user)
    adapters = schedulers()
    template = find_template(str(wanted["template"])) if wanted.get("template") else None
    if wanted.get("scheduler"):
        adapter, _ = pick(adapters, env, str(wanted["scheduler"]))
        why = sources["scheduler"]
    elif template is not None:
        adapter, _ = pick(adapters, env, template.scheduler)
        why = f"template:{template.name}"
    else:
        adapter, why = pick(adapters, env, None)
    base: list[Layer] = []
    if template is None:
        host = socket.gethostname()
        auto = templates_for_host(host, adapter.name)
        if auto is not None:
            template, pattern = auto
            base.append(
                (f"template:{template.name} (auto: host {host} matches {pattern!r})", {"template": template.name})
            )
    if template is not None:
        base.insert(0, (f"template:{template.name}", template.defaults))
    spec = LaunchSpec.from_layers([*base, *user])
    spec._provenance.setdefault("scheduler", why)
    try:
        alloc = adapter.allocation(env)
    except SchedulerError:
        # Outside the scheduler's job a hostfile alone says where to run.
        if spec.hostfile is None:
            raise
        alloc = Allocation(scheduler=adapter.name, hosts=())
    updates: dict[str, Any] = {"tmpdir": tempfile.gettempdir(), "python": sys.executable}
    if spec.hostfile is not None:
        listed = read_hostfile(spec.hostfile)
        updates.update(
            hosts=listed.hosts, slots=listed.slots, hostfile=str(spec.hostfile), source=f"hostfile {spec.hostfile}"
        )
    if spec.accelerators_per_node is None and alloc.accelerators is None:
        updates["accelerators"], probe = probe_accelerators()
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


_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port that is free on this host now.

    The port is chosen below the kernel's ephemeral range
    (``/proc/sys/net/ipv4/ip_local_port_range``), which the kernel never hands
    out for ``bind(0)``: an ephemeral port could be taken between now and the
    moment rank 0 binds it (MPICH's own control socket did exactly that).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    span = max(low - 20000, 1)
    start = 20000 + (os.getpid() * 7919 + int(time.monotonic() * 1000)) % span
    for offset in range(200):
        port = 20000 + (start - 20000 + offset) % span
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def plan_launch(spec: LaunchSpec | Sequence[Layer], environ: Mapping[str, str] | None = None) -> Plan:
    """Resolve ``spec`` (a spec, or its layers lowest first) on this machine and render it."""
    if isinstance(spec, LaunchSpec):
        layers = spec._layers or [("python", spec.model_dump(exclude_unset=True))]
    else:
        layers = list(spec)
    resolved = resolve(layers, environ)
    final = resolved.spec
    if final.master_port is None:
        # Each launch gets its own port so two jobs on one host never collide.
        provenance = final.provenance
        final = final.model_copy(update={"master_port": free_port()})
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
    rows += [(f"writes {path}", f"{len(content.splitlines())} hosts", "") for path, content in plan.files]
    rows += _left_out_rows(plan, max_hosts)
    width = max(len(r[0]) for r in rows)
    lines = [f"# {name:<{width}}  {value}" + (f"   [{source}]" if source else "") for name, value, source in rows]
    return "\n".join([*lines, str(plan)])
