"""Save and resume training state: sharded, asynchronous, atomic checkpoints.

The few lines a training script needs (``ezpz.checkpoint`` is this module)::

    loaded = ezpz.checkpoint.load_latest("ckpt", model, optimizer)
    start = loaded.step + 1 if loaded else 0
    for step in range(start, max_steps):
        ...  # one training step
        if step % 100 == 0:
            ezpz.checkpoint.save("ckpt", model, optimizer, step=step, async_save=True)
    ezpz.checkpoint.wait()

What it does:

* **Any model wrap_model makes.**  Plain, DDP, FSDP2 and HSDP models go
  through :mod:`torch.distributed.checkpoint` (DCP) and its
  ``get_state_dict``/``set_state_dict``: every rank writes its own shards, and
  the keys on disk are the bare model's (no ``module.`` prefix), so a DDP or
  FSDP checkpoint loads at another world size, or into a plain model.
* **Optimizer, step, RNG.**  The optimizer's state (keyed by parameter name),
  the step and a JSON-able ``extra`` mapping (data position, ...), and each
  rank's RNG states (python ``random``, numpy when imported, torch CPU and
  CUDA when present), restored when the world size matches.
* **Atomic.**  A save writes ``DIR/step-00000100.tmp/``; once every rank's
  files are written, rank 0 renames it to ``DIR/step-00000100`` and tells
  the other ranks.  A save cut off (SIGKILL, walltime) leaves only the
  ``.tmp`` directory, which loading never reads: :func:`load_latest` takes
  the newest *complete* checkpoint.  ``keep=K`` prunes older ones.
* **Asynchronous.**  ``async_save=True`` copies the state to CPU memory and
  returns; the files are written by a background thread over a separate
  gloo process group while training continues.  The next :func:`save` (or
  :func:`wait`) waits for it first.
* **Never half-loaded.**  :func:`load` checks the checkpoint's keys and
  shapes against the model before reading anything, reads into a copy, and
  only then assigns; a mismatch is one :class:`~ezpz.errors.CheckpointError`
  line naming the keys.

:func:`latest` and :func:`checkpoints` only look at the filesystem: no torch,
no process group.  The directory on disk is :mod:`ezpz.runtime.checkpoint_dir`,
what is in a checkpoint :mod:`ezpz.runtime.checkpoint_state`, how the ranks
agree :mod:`ezpz.runtime.checkpoint_ranks`, saving
:mod:`ezpz.runtime.checkpoint_save`; loading is here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import CheckpointError
from ezpz.log import get_logger
from ezpz.runtime.checkpoint_dir import INFO_FILE, checkpoints, error_line, latest, read_info
from ezpz.runtime.checkpoint_ranks import agree, broadcast, rank_and_size
from ezpz.runtime.checkpoint_save import SaveHandle, save, wait
from ezpz.runtime.checkpoint_state import (
    assign,
    check_model,
    copy_state,
    read_metadata,
    set_rng_state,
    state_dict,
    validate,
)

if TYPE_CHECKING:
    from torch import nn
    from torch.optim import Optimizer

__all__ = [
    "INFO_FILE",
    "Loaded",
    "SaveHandle",
    "checkpoints",
    "latest",
    "load",
    "load_latest",
    "save",
    "wait",
]

log = get_logger(__name__)


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` restored: the step, where from, and the saved extras."""

    step: int
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    #: Number of ranks that wrote the checkpoint.
    world_size: int = 1


def load(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    *,
    restore_rng: bool = True,
) -> Loaded:
    """Load the checkpoint at ``path`` (a ``step-NNNNNNNN`` directory) into ``model`` and ``optimizer``.

    Every rank calls it.  The model may be wrapped differently or run at
    another world size than when saved (DCP reshards); RNG states are
    restored only at the same world size.  Nothing is assigned unless the
    whole checkpoint was read.

    Raises:
        CheckpointError: ``path`` is not a complete checkpoint, it is from a
            different model (keys or shapes; the message names them), or it
            cannot be read.  The model and optimizer are then unchanged.
    """
    check_model(model, optimizer)
    where = Path(path)
    rank, world = rank_and_size()
    # get_state_dict gives a fresh optimizer zero-filled state to load into; undone on failure.
    fresh_optimizer = optimizer is not None and not optimizer.state
    try:
        info, saved, state = _loadable(where, model, optimizer)
        saved_world = int(info.get("world_size", 1))
        rng_key = f"rank{rank}"
        want_rng = restore_rng and saved_world == world and f"rng.{rng_key}" in saved
        target = _read(where, state, rng_key if want_rng else None)
    except CheckpointError:
        if fresh_optimizer and optimizer is not None:
            optimizer.state.clear()
        raise
    assign(model, optimizer, target)
    if want_rng:
        set_rng_state(target["rng"][rng_key])
    elif restore_rng and rank == 0:
        log.info("checkpoint: RNG states not restored (saved by %d ranks, loading on %d)", saved_world, world)
    step = int(info["step"])
    if rank == 0:
        log.info("checkpoint: loaded step %d from %s", step, where)
    return Loaded(step=step, path=where, extra=dict(info.get("extra") or {}), world_size=saved_world)


def _loadable(
    where: Path, model: nn.Module, optimizer: Optimizer | None
) -> tuple[dict[str, Any], Mapping[str, Any], dict[str, Any]]:
    """The checkpoint's info, what it holds and the state to load into, once every rank can load it."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    try:
        info = read_info(where)
        saved = read_metadata(where, FileSystemReader).state_dict_metadata
        state = state_dict(model, optimizer)
        validate(where, saved, state["model"], optimizer is not None)
        mine = None
    except CheckpointError as exc:
        mine = exc
    # Every rank must agree before the collective read: one rank that cannot see the
    # files (a node-local path) would otherwise leave the others waiting in DCP.
    agree(mine, where)
    return info, saved, state


def _read(where: Path, state: dict[str, Any], rng_key: str | None) -> dict[str, Any]:
    """Read the checkpoint at ``where`` into a copy of ``state`` (and this rank's RNG under ``rng_key``)."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    _, world = rank_and_size()
    target = copy_state(state)
    if rng_key is not None:
        target["rng"] = {rng_key: b""}
    try:
        dcp_load(target, storage_reader=FileSystemReader(where), no_dist=world == 1)
    except (Exception, CheckpointException) as exc:
        raise CheckpointError("checkpoint could not be loaded", str(where), error_line(exc)) from None
    return target


def load_latest(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    *,
    restore_rng: bool = True,
) -> Loaded | None:
    """Load the newest complete checkpoint in ``directory``; ``None`` when there is none.

    Every rank calls it; rank 0 chooses the checkpoint and every rank loads
    that one.  Cut-off saves (``.tmp``) are never considered.  See
    :func:`load` for what is restored and what raises.
    """
    rank, _ = rank_and_size()
    found: tuple[str, str | None] | None = None
    if rank == 0:
        try:
            found = (str(latest(directory) or ""), None)
        except CheckpointError as exc:
            found = ("", exc.line())
    chosen, problem = broadcast(found)
    if problem is not None:
        raise CheckpointError("cannot look for checkpoints", str(directory), f"rank 0: {problem}")
    if not chosen:
        if rank == 0:
            log.info("checkpoint: no complete checkpoint in %s; starting fresh", directory)
        return None
    return load(chosen, model, optimizer, restore_rng=restore_rng)
