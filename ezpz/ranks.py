"""Who am I? Rank, local rank and world size from whichever launcher started us.

Standard library only: this runs inside :func:`ezpz.setup_torch`.  The rank
shim ``ezpz/launch/rank.sh`` reads the same lists in POSIX sh before the user's
program starts; ``tests/test_rank_shim.py`` keeps the two in agreement.

Each launcher spells the same facts differently; the first variable present
in each list wins, so torchrun's own variables always take precedence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ezpz.errors import DistError, plural

__all__ = ["RankInfo", "device_env", "rank_info", "torchrun_env"]

#: Candidate variables, most specific first.  PALS (Aurora, Polaris) sets the
#: PMI_* names and PALS_*; MPICH hydra sets PMI_RANK/PMI_SIZE and
#: MPI_LOCALRANKID/MPI_LOCALNRANKS; Open MPI sets OMPI_COMM_WORLD_*; srun sets
#: SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS.
RANK_VARS = ("RANK", "PMI_RANK", "PALS_RANKID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")
LOCAL_RANK_VARS = (
    "LOCAL_RANK",
    "PALS_LOCAL_RANKID",
    "PMI_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
)
LOCAL_SIZE_VARS = (
    "LOCAL_WORLD_SIZE",
    "PALS_LOCAL_SIZE",
    "PMI_LOCAL_SIZE",
    "MPI_LOCALNRANKS",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "SLURM_NTASKS_PER_NODE",
    "EZPZ_LOCAL_WORLD_SIZE",
)


@dataclass(frozen=True)
class RankInfo:
    """The rank facts of one process.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of ranks in the job.
        local_rank: rank among the processes on this node.
        local_world_size: number of ranks on this node.
        source: the variable the rank was read from (``"default"`` when none).
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    source: str


def _first_int(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, int] | None:
    for name in names:
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        # SLURM_NTASKS_PER_NODE may read "2(x3)" on heterogeneous layouts.
        head = raw.split("(")[0].split(",")[0]
        try:
            return name, int(head)
        except ValueError:
            raise DistError(f"{name} is not an integer", raw, "unset it or fix the launcher") from None
    return None


def rank_info(environ: Mapping[str, str] | None = None) -> RankInfo:
    """Read the rank facts from ``environ`` (default: ``os.environ``).

    A process started by nothing is rank 0 of 1.  Raises
    :class:`~ezpz.errors.DistError` for a broken environment (world size
    below 1, rank outside the world, non-integer values).
    """
    env = os.environ if environ is None else environ
    rank = _first_int(env, RANK_VARS)
    size = _first_int(env, SIZE_VARS)
    local_rank = _first_int(env, LOCAL_RANK_VARS)
    local_size = _first_int(env, LOCAL_SIZE_VARS)
    if size and size[1] < 1:
        raise DistError("world size must be at least 1", size[1], f"read from {size[0]}")
    world = size[1] if size else 1
    info = RankInfo(
        rank=rank[1] if rank else 0,
        world_size=world,
        local_rank=local_rank[1] if local_rank else 0,
        local_world_size=min(local_size[1], world) if local_size else world,
        source=rank[0] if rank else "default",
    )
    if not 0 <= info.rank < info.world_size:
        raise DistError(
            "rank is outside the world",
            f"rank={info.rank} world_size={info.world_size}",
            f"rank read from {info.source}; fix or unset the stale variable",
        )
    if not 0 <= info.local_rank < info.local_world_size:
        raise DistError(
            "local rank is outside the node",
            f"local_rank={info.local_rank} local_world_size={info.local_world_size}",
            "fix or unset the stale LOCAL_RANK/LOCAL_WORLD_SIZE variables",
        )
    return info


def torchrun_env(info: RankInfo) -> dict[str, str]:
    """Return torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) for ``info``."""
    return {
        "RANK": str(info.rank),
        "WORLD_SIZE": str(info.world_size),
        "LOCAL_RANK": str(info.local_rank),
        "LOCAL_WORLD_SIZE": str(info.local_world_size),
    }


def _through(item: str, seen: list[str], var: str) -> str:
    """Map one mask item (``D`` or ``D.T``) through the devices ``var`` already lists."""
    head, dot, tail = item.partition(".")
    if not head.isdigit() or int(head) >= len(seen):
        raise DistError(
            f"{var} lists {plural(len(seen), 'device')}, fewer than the device mask needs",
            f"{var}={','.join(seen)} mask entry {item}",
            f"give the job every device of the node, or unset {var}",
        )
    picked = seen[int(head)]
    if dot and "." in picked:
        raise DistError(f"{var} already names tiles", f"{var}={','.join(seen)}", "use --device-mask ze")
    return picked + dot + tail


def device_env(environ: Mapping[str, str], local_rank: int) -> dict[str, str]:
    """Return this rank's device mask from the plan's ``EZPZ_DEVICE_VAR`` / ``EZPZ_DEVICE_MAP``.

    ``EZPZ_DEVICE_MAP`` holds one entry per local rank (``0 1 2 3``, or
    ``0.0 0.1 …`` for tiles); each entry counts the node's devices from 0.
    When the variable is already set (Slurm sets ``CUDA_VISIBLE_DEVICES`` to
    a step's GPUs; a user may pick devices before launching), an entry
    counts the devices that list names: ``CUDA_VISIBLE_DEVICES=4,5,6,7`` and
    entry ``1`` give ``5``.  Empty when the plan sets no mask.
    """
    var = environ.get("EZPZ_DEVICE_VAR")
    entries = environ.get("EZPZ_DEVICE_MAP", "").split()
    if not var or not entries:
        return {}
    if local_rank >= len(entries):
        raise DistError(
            "local rank has no entry in the device mask",
            f"local_rank={local_rank} EZPZ_DEVICE_MAP={' '.join(entries)}",
            "the launcher put more ranks on this node than planned; check -ppn",
        )
    entry = entries[local_rank]
    seen = [d.strip() for d in environ.get(var, "").split(",") if d.strip()]
    if seen:
        entry = ",".join(_through(item, seen, var) for item in entry.split(","))
    return {var: entry}
