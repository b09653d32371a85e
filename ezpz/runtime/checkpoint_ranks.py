"""How the ranks of a checkpoint agree: rank 0's answer everywhere, every rank's problem everywhere.

Without a process group (one process) each of these answers for this process alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ezpz.errors import CheckpointError
from ezpz.runtime import dist as ezdist

__all__ = ["agree", "broadcast", "gather", "rank_and_size"]


def rank_and_size() -> tuple[int, int]:
    """Return this rank and the world size (``(0, 1)`` without a process group)."""
    dist = ezdist._dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def broadcast(value: Any, group: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    dist = ezdist._dist()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    dist = ezdist._dist()
    if dist is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def agree(mine: CheckpointError | None, path: Path) -> None:
    """Raise on every rank when any rank found a problem (its own error where it has one)."""
    lines = gather(mine.line() if mine is not None else None)
    if mine is not None:
        raise mine
    failed = [(r, line) for r, line in enumerate(lines) if line is not None]
    if failed:
        rank, line = failed[0]
        raise CheckpointError("checkpoint cannot be loaded on every rank", str(path), f"rank {rank}: {line}")
