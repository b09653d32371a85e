"""Counting: np, ppn and hosts of one launch from a spec and an allocation, and the cpu-binding cut.

The rules are documented in ``docs/launch.md`` ("How counts are decided");
every adapter shares them through :meth:`ezpz.schedulers.base.Scheduler.render`.
"""

from __future__ import annotations

from ezpz.errors import SchedulerError, SpecError, plural
from ezpz.model.allocation import Allocation, Layout
from ezpz.model.spec import LaunchSpec

__all__ = ["cpu_bind_note", "cut_cpu_bind", "layout", "pack_accelerators_first"]


def _default_ppn(alloc: Allocation, accel: int, how: str, nhosts: int | None) -> tuple[int, str]:
    """Ranks per host when none is given: the accelerators, else the fewest slots of the hosts used, else 1."""
    if accel > 0:
        return accel, f"accelerators per node ({how})"
    if alloc.slots:
        return min(alloc.slots[:nhosts]), f"slots per host ({alloc.source})"
    return 1, "cpu-only nodes: 1 rank per node (pass -ppn for more)"


def _hosts_for(np: int, accelerators: int) -> int:
    """The fewest hosts that hold ``np`` ranks at ``accelerators`` per host: ceil(np / accelerators)."""
    return -(-np // accelerators)


def pack_accelerators_first(np: int, accelerators: int, hosts: int) -> tuple[int, int]:
    """The packing rule for ``-n`` alone on nodes with accelerators: return (nhosts, ppn).

    Use the fewest hosts that hold ``np`` ranks, evenly: ``nhosts = ceil(np /
    accelerators)``, ``ppn = np / nhosts`` (``-n 6`` at 4 per node: 2 × 3).  Raises
    :class:`~ezpz.errors.SpecError` naming the valid choices when ``np`` does not
    split evenly over those hosts or needs more than the job's ``hosts``.
    """
    nhosts = _hosts_for(np, accelerators)
    if nhosts <= hosts and np % nhosts == 0:
        return nhosts, np // nhosts
    choices = _packable_near(np, accelerators, hosts)
    # More hosts than nhosts hold np // d < accelerators each: those dividing np are exact.
    exact = [f"-nh {d} -ppn {np // d}" for d in range(nhosts + 1, hosts + 1) if np % d == 0]
    valid = ", ".join([*choices, *exact])  # never empty: one rank on one host always packs
    if nhosts > hosts:
        what = (
            f"np={np} needs {plural(nhosts, 'host')} at {plural(accelerators, 'accelerator')} per node, "
            f"the job has {hosts}"
        )
        more = "; or pass --oversubscribe to put more ranks on each host"
    else:
        what = (
            f"np={np} does not split evenly over the {plural(nhosts, 'host')} it needs at "
            f"{plural(accelerators, 'accelerator')} per node"
        )
        more = ""
    raise SpecError(what, f"-n {np}", f"valid: {valid}{more}")


def _packable_near(np: int, accelerators: int, hosts: int) -> list[str]:
    """The nearest rank counts below and above ``np`` that the packing rule places evenly."""

    def packs(n: int) -> bool:
        return n % _hosts_for(n, accelerators) == 0

    def shown(n: int) -> str:
        nh = _hosts_for(n, accelerators)
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

    One function on purpose (~60 lines): the rules read top to bottom in the
    order ``docs/launch.md`` gives them, and ``tests/test_counting_model.py``
    checks them as one model.
    """
    prov = spec.provenance
    if spec.accelerators_per_node is not None:
        accel, how = spec.accelerators_per_node, prov.get("accelerators_per_node", "spec")
    else:
        accel = alloc.accelerators or 0
        how = f"detected: {accel}"
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
        out["nhosts"] = f"fill accelerators first: ceil(np / {plural(accel, 'accelerator')} per node)"
        out["ppn"] = "np / nhosts"
    elif np is not None:
        if np % avail and np > avail:
            raise SpecError(
                f"np={np} is not divisible by the job's {plural(avail, 'host')}",
                f"-n {np}",
                "give -ppn or -nh too, or a multiple of the host count",
            )
        nh = min(avail, np)
        ppn = np // nh
        out["nhosts"], out["ppn"] = f"np over the job's {plural(avail, 'host')}", "np / nhosts"
    else:
        if ppn is None:
            ppn, out["ppn"] = _default_ppn(alloc, accel, how, nh)
        if nh is None:
            left = f", {len(alloc.left_out)} left out" if alloc.left_out else ""
            nh, out["nhosts"] = avail, f"all {'usable ' if left else ''}hosts of the job ({alloc.source}{left})"
        np = nh * ppn
        out["np"] = "nhosts × ppn"
    assert nh is not None and ppn is not None  # pragma: no mutate (narrows the types for pyright; always true here)
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
                f"the job has {plural(sum(alloc.slots), 'slot')} on {plural(avail, 'host')}; pass --oversubscribe to override",
            )
    if accel > 0 and ppn > accel and not spec.oversubscribe:
        raise SpecError(
            f"ppn exceeds the {plural(accel, 'accelerator')} per node",
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
        return f"list of {len(entries)} entries cut to ppn={ppn}"  # more than ppn >= 1: always plural
    return f"list of {plural(len(entries), 'entry', 'entries')} for ppn={ppn}: passed as given (fewer entries than ranks per node)"
