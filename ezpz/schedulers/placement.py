"""Which hosts a launch may use: excluded and included hosts, spare nodes.

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
from typing import TYPE_CHECKING

from ezpz.errors import SpecError
from ezpz.schedulers.hosts import compress_nodelist

if TYPE_CHECKING:
    from ezpz.model.allocation import Allocation

__all__ = ["Selection", "select_hosts"]


@dataclass(frozen=True)
class Selection:
    """An allocation with hosts left out, and what to tell the user about it.

    Attributes:
        allocation: the allocation to count on: usable hosts only, spares in
            :attr:`~ezpz.model.allocation.Allocation.spares`.
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
    left: list[tuple[str, str]] = list(alloc.left_out)
    keep: list[int] = []
    for i, host in enumerate(alloc.hosts):
        if wanted is not None and host not in wanted:
            left.append((host, "not in --include-hosts"))
        elif host in out:
            left.append((host, "excluded (--exclude-hosts)"))
        else:
            keep.append(i)
    if wanted is not None and not wanted & job:
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
