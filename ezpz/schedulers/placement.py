"""Which hosts a launch may use: excluded and included hosts, spare nodes, node failover.

Pure rules over an :class:`~ezpz.model.allocation.Allocation`; the host sets
arrive already read (:func:`ezpz.schedulers.hosts.read_host_set`) and nothing here does
I/O.  Selection happens before counting, so ``-n`` and ``-nh`` count only the
hosts left in the allocation.  Every host left out is recorded with the reason,
for the dry run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ezpz.errors import LaunchError, SpecError
from ezpz.schedulers.hosts import compress_nodelist

if TYPE_CHECKING:
    from ezpz.model.allocation import Allocation
    from ezpz.model.plan import Plan

__all__ = ["FailedRank", "Selection", "fail_over", "host_to_drop", "replace_host", "select_hosts"]

#: Reason recorded for a host dropped after it failed (the start of it).
FAILED = "failed"


@dataclass(frozen=True)
class Selection:
    """An allocation with hosts left out, and what to tell the user about it.

    Attributes:
        allocation: the allocation to count on: usable hosts only, spares in
            :attr:`~ezpz.schedulers.base.Allocation.spares`.
        warnings: hosts named that the job does not have (ignored).
    """

    allocation: Allocation
    warnings: tuple[str, ...] = ()


def _shown(hosts: Sequence[str]) -> str:
    return compress_nodelist(list(hosts))


def select_hosts(
    alloc: Allocation,
    *,
    exclude: Collection[str] = (),
    include: Collection[str] | None = None,
    spares: int = 0,
) -> Selection:
    """Leave out the hosts not in ``include``, those in ``exclude``, and the last ``spares`` usable ones.

    Raises :class:`~ezpz.errors.SpecError` when no host is left to run on
    (every host excluded, none included, or ``spares`` ≥ the usable hosts).  A
    host named in ``exclude`` or ``include`` that the job does not have is not
    an error: it is reported in :attr:`Selection.warnings`.
    """
    job = set(alloc.hosts)
    out = set(exclude)
    wanted = None if include is None else set(include)
    warnings = [
        f"{option} names hosts that are not in the job ({_shown(sorted(missing))}); ignored"
        for option, named in (("--include-hosts", wanted or set()), ("--exclude-hosts", out))
        if (missing := named - job)
    ]
    keep, left = _usable(alloc, wanted, out)
    if spares >= len(keep):
        raise SpecError(
            f"no host left to run on beside the spares: the job has {len(keep)} usable hosts",
            f"--spare-nodes {spares}",
            f"use --spare-nodes {len(keep) - 1} or fewer",
        )
    run, held = keep[: len(keep) - spares], keep[len(keep) - spares :]
    left += [(alloc.hosts[i], f"spare (--spare-nodes {spares})") for i in held]
    slots = alloc.slots
    chosen = dataclasses.replace(
        alloc,
        hosts=tuple(alloc.hosts[i] for i in run),
        slots=None if slots is None else tuple(slots[i] for i in run),
        spares=tuple(alloc.hosts[i] for i in held),
        spare_slots=None if slots is None else tuple(slots[i] for i in held),
        left_out=tuple(left),
    )
    return Selection(chosen, tuple(warnings))


def _usable(alloc: Allocation, wanted: set[str] | None, out: set[str]) -> tuple[list[int], list[tuple[str, str]]]:
    """The indices of the hosts in ``wanted`` (all when None) and not in ``out``, and the left-out hosts with why.

    Raises :class:`~ezpz.errors.SpecError` when none is left.
    """
    left: list[tuple[str, str]] = list(alloc.left_out)
    keep: list[int] = []
    for i, host in enumerate(alloc.hosts):
        if wanted is not None and host not in wanted:
            left.append((host, "not in --include-hosts"))
        elif host in out:
            left.append((host, "excluded (--exclude-hosts)"))
        else:
            keep.append(i)
    if wanted is not None and not wanted & set(alloc.hosts):
        raise SpecError(
            "no host of the job is in --include-hosts",
            _shown(sorted(wanted)),
            f"the job's hosts are {_shown(alloc.hosts)} ({alloc.source})",
        )
    if not keep:
        raise SpecError(
            "--exclude-hosts leaves out every host of the job",
            _shown(sorted(out)),
            f"the job's hosts are {_shown(alloc.hosts)} ({alloc.source}); leave at least one in",
        )
    return keep, left


class FailedRank(Protocol):
    """The part of a launch's failure record that failover reads (``ezpz.supervise.Failure``)."""

    @property
    def rank(self) -> int:
        """Global rank that failed first."""
        ...

    @property
    def host(self) -> str:
        """Host that rank ran on, as the rank saw it."""
        ...

    @property
    def code(self) -> int | None:
        """Its exit code, when it exited."""
        ...

    @property
    def signal(self) -> int | None:
        """The signal that ended it, when one did."""
        ...


def host_to_drop(failure: FailedRank | None, hosts: Sequence[str], ppn: int) -> str | None:
    """The plan host to blame for ``failure``: the first failing rank's host, or ``None``.

    The record's host is matched to the plan's hosts by name, then by short
    name (``x4000c0s0b0n0.hsn`` is ``x4000c0s0b0n0``); a host the plan does not
    know (a fake host layout, where every rank sees the same hostname) falls
    back to where the plan put that rank: ranks fill hosts in order, ``ppn``
    each, in every dialect ezpz renders.
    """
    if failure is None:
        return None
    if failure.host in hosts:
        return failure.host
    short = failure.host.partition(".")[0]
    for host in hosts:
        if host.partition(".")[0] == short:
            return host
    if 0 <= failure.rank < len(hosts) * ppn:
        return hosts[failure.rank // ppn]
    return None


def replace_host(alloc: Allocation, bad: str, why: str) -> Allocation:
    """``alloc`` without host ``bad``: its first spare takes ``bad``'s place, so the ranks stay the same.

    Raises :class:`~ezpz.errors.LaunchError` naming every host that failed so far
    when no spare is left: a launch never runs on fewer ranks than asked.
    """
    failed = [host for host, reason in alloc.left_out if reason.startswith(FAILED)] + [bad]
    if not alloc.spares:
        raise LaunchError(
            f"no spare host left to replace failed host {bad}",
            f"failed hosts {', '.join(failed)}",
            f"the launch needs {len(alloc.hosts)} hosts; give more --spare-nodes, "
            f"or leave the failed hosts out with --exclude-hosts {_shown(failed)}",
        )
    spare, *rest = alloc.spares
    at = alloc.hosts.index(bad)
    hosts = (*alloc.hosts[:at], spare, *alloc.hosts[at + 1 :])
    slots = alloc.slots
    if slots is not None and alloc.spare_slots is not None:
        slots = (*slots[:at], alloc.spare_slots[0], *slots[at + 1 :])
    left = tuple((host, reason) for host, reason in alloc.left_out if host != spare)
    return dataclasses.replace(
        alloc,
        hosts=hosts,
        slots=slots,
        spares=tuple(rest),
        spare_slots=None if alloc.spare_slots is None else alloc.spare_slots[1:],
        left_out=(*left, (bad, f"{FAILED}: {why}")),
    )


def fail_over(plan: Plan, failure: FailedRank | None) -> tuple[Plan, str] | None:
    """The next attempt after a failed one: ``plan`` with the failing rank's host replaced by a spare.

    Returns the new plan and the host dropped, or ``None`` when this launch
    has no spares (``--spare-nodes``) or no host is to blame (no failure
    record): then the launch is retried as it was.  Raises
    :class:`~ezpz.errors.LaunchError` naming the failed hosts when no spare is
    left.
    """
    if plan.failover is None:
        return None
    bad = host_to_drop(failure, plan.hosts, plan.ppn)
    if failure is None or bad is None:
        return None
    how = f"signal {failure.signal}" if failure.signal is not None else f"exit {failure.code}"
    return plan.failover(bad, f"rank {failure.rank} {how}"), bad
