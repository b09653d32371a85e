"""Saving a checkpoint: atomic, on every rank, blocking or in the background.

:func:`save` is ``ezpz.checkpoint.save`` (see :mod:`ezpz.runtime.checkpoint`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import CheckpointError
from ezpz.log import get_logger
from ezpz.runtime import dist as ezdist
from ezpz.runtime.checkpoint_dir import (
    DCP_METADATA,
    TMP,
    error_line,
    fsync_dir,
    is_complete,
    prepare,
    probe,
    prune,
    step_name,
)
from ezpz.runtime.checkpoint_ranks import broadcast, gather, rank_and_size
from ezpz.runtime.checkpoint_state import check_model, rng_state, state_dict, torch_module

if TYPE_CHECKING:
    from concurrent.futures import Future

    from torch import nn
    from torch.optim import Optimizer

__all__ = ["SaveHandle", "save", "wait"]

log = get_logger("ezpz.runtime.checkpoint")

_FORMAT = 1


class SaveHandle:
    """One save: its final ``path`` and ``step``; :meth:`wait` until it is complete.

    ``seconds`` is the wall time from the :func:`save` call until the
    checkpoint was complete (``None`` while it is written).
    """

    def __init__(self, path: Path, step: int) -> None:
        self.path = path
        self.step = step
        self.seconds: float | None = None
        self._event = threading.Event()
        self._error: str | None = None

    def done(self) -> bool:
        """Return True once the save finished (complete, or failed)."""
        return self._event.is_set()

    def wait(self) -> Path:
        """Block until the checkpoint is complete on disk and return its path.

        Raises:
            CheckpointError: the files could not be written; the previous
                complete checkpoint is untouched.
        """
        self._event.wait()
        if self._error is not None:
            raise CheckpointError(
                "checkpoint was not written", str(self.path), f"{self._error}; the previous complete one is kept"
            )
        return self.path

    def _finish(self, error: str | None) -> None:
        self._error = error
        self._event.set()

    def __repr__(self) -> str:
        state = "done" if self.done() else "writing"
        return f"SaveHandle(path={str(self.path)!r}, step={self.step}, {state})"


@dataclass
class _State:
    pending: SaveHandle | None = None
    group: Any = None
    group_of: Any = None  # the default group `group` was made for


_STATE = _State()


def _save_group() -> Any:
    """A gloo group for checkpoint traffic, so background writes never share training's group."""
    dist = ezdist._dist()
    if dist is None:
        return None
    world = dist.group.WORLD
    if _STATE.group is None or _STATE.group_of is not world:
        _STATE.group = dist.new_group(backend="gloo")
        _STATE.group_of = world
    return _STATE.group


def _check_args(step: object, keep: object, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Raise on a bad ``step``, ``keep`` or ``extra``; return ``extra`` as JSON data."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError("step must be a non-negative integer", repr(step), "e.g. step=100")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise CheckpointError("keep must be a positive integer or None", repr(keep), "e.g. keep=3; None keeps all")
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise CheckpointError("extra must be a mapping", type(extra).__name__, "e.g. extra={'epoch': 2}")
    try:
        return json.loads(json.dumps(dict(extra)))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            "extra must be JSON-serialisable", error_line(exc), "use numbers, strings, lists, dicts"
        ) from None


def _commit(handle: SaveHandle, error: str | None, tmp: Path, keep: int | None, group: Any, started: float) -> None:
    """After DCP finished on every rank: rank 0 renames ``tmp`` into place, then all ranks learn the result."""
    rank, _ = rank_and_size()
    if rank == 0 and error is None:
        try:
            if not (tmp / DCP_METADATA).is_file():
                raise FileNotFoundError(f"{tmp / DCP_METADATA} missing after the write")
            tmp.rename(handle.path)
            fsync_dir(handle.path.parent)
            prune(handle.path.parent, keep, handle.path)
        except OSError as exc:
            error = error_line(exc)
    try:
        error = broadcast(error, group)
    except Exception as exc:  # the group broke (a rank died): nothing was committed here
        error = error or error_line(exc)
    handle.seconds = time.perf_counter() - started
    if error is None and rank == 0:
        log.info("checkpoint: saved step %d to %s in %.2f s", handle.step, handle.path, handle.seconds)
    handle._finish(error)


def wait() -> Path | None:
    """Block until this process's pending asynchronous save is complete; return its path.

    Call it on every rank before the program exits; :func:`ezpz.cleanup`
    calls it before destroying the process group the write uses.  ``None``
    when no save is pending.

    Raises:
        CheckpointError: the pending save failed.
    """
    handle, _STATE.pending = _STATE.pending, None
    return handle.wait() if handle is not None else None


def save(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    *,
    step: int,
    extra: Mapping[str, Any] | None = None,
    keep: int | None = 3,
    async_save: bool = False,
) -> SaveHandle:
    """Save ``model`` (and ``optimizer``) at ``step`` into ``directory``; every rank calls it.

    Args:
        directory: where checkpoints live; ``step-<8 digits>`` directories
            are made in it (shared by all ranks: a parallel filesystem).
        model: the model as :func:`ezpz.wrap_model` returned it (plain, DDP,
            FSDP2 or HSDP).
        optimizer: its optimizer, or ``None`` to save weights only.
        step: the training step this state belongs to (``>= 0``).
        extra: JSON-able values to restore with it (``Loaded.extra``).
        keep: how many complete checkpoints to keep (oldest go first);
            ``None`` keeps all.
        async_save: return once the state is copied to CPU memory and write
            the files in the background; see :meth:`SaveHandle.wait`.

    Returns a :class:`SaveHandle` (already complete unless ``async_save``).
    Saving a step that is already complete does nothing and returns it.

    Raises:
        CheckpointError: bad arguments, ``directory`` not writable on some
            rank (raised on every rank, before any file is written), a
            failed write, or an earlier asynchronous save that failed.
    """
    info_extra = _check_args(step, keep, extra)
    check_model(model, optimizer)
    wait()
    started = time.perf_counter()
    root = Path(directory)
    handle = SaveHandle(root / step_name(step), step)
    rank, _ = rank_and_size()
    if broadcast(is_complete(handle.path) if rank == 0 else None):
        log.info("checkpoint: step %d is already saved in %s", step, handle.path)
        handle._finish(None)
        return handle
    tmp = root / (step_name(step) + TMP)
    _make_tmp(root, tmp, step, info_extra)
    state = {**state_dict(model, optimizer), "rng": {f"rank{rank}": rng_state()}}
    write = _write_async if async_save else _write
    write(state, handle, tmp, keep, _save_group(), started)
    return handle


def _make_tmp(root: Path, tmp: Path, step: int, extra: dict[str, Any]) -> None:
    """Rank 0 makes ``tmp`` with its info file, every rank tries to write there; raise on every rank if one cannot."""
    rank, world = rank_and_size()
    info = {"format": _FORMAT, "step": step, "world_size": world, "time": time.time(), "extra": extra}
    info["torch"] = torch_module().__version__
    problem = broadcast(prepare(root, tmp, info) if rank == 0 else None)
    if problem is None:
        problems = [(r, p) for r, p in enumerate(gather(probe(tmp))) if p is not None]
        problem = f"rank {problems[0][0]}: {problems[0][1]}" if problems else None
    if problem is not None:
        raise CheckpointError(
            "checkpoint directory is not writable", str(root), f"{problem}; pick a writable directory"
        )


def _write(state: dict[str, Any], handle: SaveHandle, tmp: Path, keep: int | None, group: Any, started: float) -> None:
    """Write ``state`` into ``tmp`` now and commit it; raise when it failed."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

    _, world = rank_and_size()
    writer = FileSystemWriter(tmp)
    error = None
    try:
        dcp_save(state, storage_writer=writer, process_group=group, no_dist=world == 1)
    except (Exception, CheckpointException) as exc:
        error = error_line(exc)
    _commit(handle, error, tmp, keep, group, started)
    handle.wait()


def _write_async(
    state: dict[str, Any], handle: SaveHandle, tmp: Path, keep: int | None, group: Any, started: float
) -> None:
    """Copy ``state`` to CPU memory and write it into ``tmp`` in the background; commit when written."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import async_save as dcp_async_save

    _, world = rank_and_size()
    writer = FileSystemWriter(tmp)
    try:
        future: Future[Any] = dcp_async_save(state, storage_writer=writer, process_group=group, no_dist=world == 1)  # type: ignore[assignment]
    except (Exception, CheckpointException) as exc:
        raise CheckpointError("checkpoint could not be staged", str(handle.path), error_line(exc)) from None
    _STATE.pending = handle

    def finished(done: Future[Any]) -> None:
        exc = done.exception()
        _commit(handle, error_line(exc) if exc is not None else None, tmp, keep, group, started)

    future.add_done_callback(finished)
