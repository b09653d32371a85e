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
no process group.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import CheckpointError
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.runtime import dist as ezdist

if TYPE_CHECKING:
    from concurrent.futures import Future

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

#: File rank 0 writes into every checkpoint: step, world size, extra, format.
INFO_FILE = "ezpz.json"
#: The file DCP's coordinator writes last; a checkpoint without it is incomplete.
_DCP_METADATA = ".metadata"
_FORMAT = 1
_TMP = ".tmp"
_NAME = re.compile(r"step-(\d+)")
_SHOW = 4  # keys named in a mismatch message


def _name(step: int) -> str:
    return f"step-{step:08d}"


def _is_complete(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and (path / _DCP_METADATA).is_file()


def checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the complete checkpoints in ``directory``, oldest step first.

    ``.tmp`` directories (saves in progress or cut off) are never listed.  A
    missing directory has none.  Filesystem only: no torch, no collective.
    """
    root = Path(directory)
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise CheckpointError("cannot read the checkpoint directory", str(root), exc.strerror or str(exc)) from None
    found = []
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match and _is_complete(entry):
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def latest(directory: str | os.PathLike[str]) -> Path | None:
    """Return the newest complete checkpoint in ``directory``, or ``None``."""
    found = checkpoints(directory)
    return found[-1] if found else None


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` restored: the step, where from, and the saved extras."""

    step: int
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    #: Number of ranks that wrote the checkpoint.
    world_size: int = 1


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


def _torch() -> Any:
    torch = require("torch", "torch")
    # DCP warns on every single-process save/load; ezpz passes no_dist=True on purpose there.
    warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
    return torch


def _world() -> tuple[int, int]:
    dist = ezdist._dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def _broadcast(value: Any, group: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    dist = ezdist._dist()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    return box[0]


def _gather(value: Any) -> list[Any]:
    dist = ezdist._dist()
    if dist is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


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


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``; for DCP's CheckpointException, of the first failing rank's cause."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        rank, (cause, _) = min(failures.items(), key=lambda item: item[0])
        return f"rank {rank}: {_first_line(cause)}"
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


def _check_args(step: object, keep: object, extra: Mapping[str, Any] | None) -> dict[str, Any]:
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
            "extra must be JSON-serialisable", _first_line(exc), "use numbers, strings, lists, dicts"
        ) from None


def _rng_state() -> bytes:
    torch = _torch()
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    return pickle.dumps(state)


def _restore_rng(blob: bytes) -> None:
    torch = _torch()
    state = pickle.loads(blob)  # noqa: S301 - written by save() into the user's own checkpoint
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = sys.modules.get("numpy")
    if "numpy" in state and numpy is not None:
        numpy.random.set_state(state["numpy"])


def _check_model(model: object, optimizer: object) -> None:
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError("expected a torch.nn.Module", type(model).__name__, "pass the model (wrapped or not)")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise CheckpointError(
            "expected a torch.optim.Optimizer", type(optimizer).__name__, "pass the optimizer or None"
        )


def _state_dict(model: nn.Module, optimizer: Optimizer | None) -> dict[str, Any]:
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def _prepare(root: Path, tmp: Path, info: dict[str, Any]) -> str | None:
    """Rank 0: make ``root``, a fresh ``tmp`` and its info file; the error line, or None."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a save that was cut off
        tmp.mkdir()
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    except OSError as exc:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or root}"
    return None


def _probe(tmp: Path) -> str | None:
    """Every rank: the reason this rank cannot create files in ``tmp``, or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=tmp, prefix=".probe-"):
            pass
    except OSError as exc:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or tmp}"
    return None


def _prune(root: Path, keep: int | None, newest: Path) -> None:
    """Rank 0, after a commit: drop complete checkpoints beyond ``keep`` and older cut-off saves."""
    complete = checkpoints(root)
    doomed = complete[:-keep] if keep is not None else []
    newest_step = int(newest.name.removeprefix("step-"))
    for entry in root.iterdir():
        match = _NAME.fullmatch(entry.name.removesuffix(_TMP))
        if entry.name.endswith(_TMP) and match and int(match.group(1)) < newest_step:
            doomed.append(entry)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
        log.debug("checkpoint: removed %s", path)


def _commit(handle: SaveHandle, error: str | None, tmp: Path, keep: int | None, group: Any, started: float) -> None:
    """After DCP finished on every rank: rank 0 renames ``tmp`` into place, then all ranks learn the result."""
    rank, _ = _world()
    if rank == 0 and error is None:
        try:
            if not (tmp / _DCP_METADATA).is_file():
                raise FileNotFoundError(f"{tmp / _DCP_METADATA} missing after the write")
            tmp.rename(handle.path)
            _fsync_dir(handle.path.parent)
            _prune(handle.path.parent, keep, handle.path)
        except OSError as exc:
            error = _first_line(exc)
    try:
        error = _broadcast(error, group)
    except Exception as exc:  # the group broke (a rank died): nothing was committed here
        error = error or _first_line(exc)
    handle.seconds = time.perf_counter() - started
    if error is None and rank == 0:
        log.info("checkpoint: saved step %d to %s in %.2f s", handle.step, handle.path, handle.seconds)
    handle._finish(error)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    _check_model(model, optimizer)
    torch = _torch()
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import async_save as dcp_async_save
    from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

    wait()
    started = time.perf_counter()
    root = Path(directory)
    handle = SaveHandle(root / _name(step), step)
    tmp = root / (_name(step) + _TMP)
    rank, world = _world()
    if _broadcast(_is_complete(handle.path) if rank == 0 else None):
        log.info("checkpoint: step %d is already saved in %s", step, handle.path)
        handle._finish(None)
        return handle
    info = {"format": _FORMAT, "step": step, "world_size": world, "time": time.time(), "extra": info_extra}
    info["torch"] = torch.__version__
    problem = _broadcast(_prepare(root, tmp, info) if rank == 0 else None)
    if problem is None:
        problems = [(r, p) for r, p in enumerate(_gather(_probe(tmp))) if p is not None]
        problem = f"rank {problems[0][0]}: {problems[0][1]}" if problems else None
    if problem is not None:
        raise CheckpointError(
            "checkpoint directory is not writable", str(root), f"{problem}; pick a writable directory"
        )
    state = _state_dict(model, optimizer)
    state["rng"] = {f"rank{rank}": _rng_state()}
    group = _save_group()
    writer = FileSystemWriter(tmp)
    if async_save:
        try:
            future: Future[Any] = dcp_async_save(state, storage_writer=writer, process_group=group, no_dist=world == 1)  # type: ignore[assignment]
        except (Exception, CheckpointException) as exc:
            raise CheckpointError("checkpoint could not be staged", str(handle.path), _first_line(exc)) from None
        _STATE.pending = handle

        def finished(done: Future[Any]) -> None:
            exc = done.exception()
            _commit(handle, _first_line(exc) if exc is not None else None, tmp, keep, group, started)

        future.add_done_callback(finished)
        return handle
    error = None
    try:
        dcp_save(state, storage_writer=writer, process_group=group, no_dist=world == 1)
    except (Exception, CheckpointException) as exc:
        error = _first_line(exc)
    _commit(handle, error, tmp, keep, group, started)
    handle.wait()
    return handle


def _read_info(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(
            "no such checkpoint", str(path), "give a step-NNNNNNNN directory, or use load_latest(DIR)"
        )
    if not _is_complete(path):
        raise CheckpointError(
            "not a complete checkpoint", str(path), f"it lacks {INFO_FILE} or {_DCP_METADATA}; use load_latest(DIR)"
        )
    try:
        info = json.loads((path / INFO_FILE).read_text())
        int(info["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("unreadable checkpoint info", str(path / INFO_FILE), _first_line(exc)) from None
    return info


def _read_metadata(path: Path, reader: Any) -> Any:
    try:
        return reader(path).read_metadata()
    except Exception as exc:
        raise CheckpointError("unreadable checkpoint metadata", str(path), _first_line(exc)) from None


def _agree(mine: CheckpointError | None, path: Path) -> None:
    """Raise on every rank when any rank found a problem (its own error where it has one)."""
    lines = _gather(mine.line() if mine is not None else None)
    if mine is not None:
        raise mine
    failed = [(r, line) for r, line in enumerate(lines) if line is not None]
    if failed:
        rank, line = failed[0]
        raise CheckpointError("checkpoint cannot be loaded on every rank", str(path), f"rank {rank}: {line}")


def _keys(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _validate(path: Path, saved: Mapping[str, Any], model_state: Mapping[str, Any], has_optim: bool) -> None:
    """Refuse a checkpoint whose model keys or shapes differ from ``model_state``."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    prefix = "model."
    on_disk = {key[len(prefix) :]: meta for key, meta in saved.items() if key.startswith(prefix)}
    ours = {key: value for key, value in model_state.items()}
    missing = sorted(set(ours) - set(on_disk))
    extra = sorted(set(on_disk) - set(ours))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"model keys not in the checkpoint: {_keys(missing)}")
        if extra:
            parts.append(f"checkpoint keys not in the model: {_keys(extra)}")
        raise CheckpointError("checkpoint is from a different model", str(path), "; ".join(parts))
    wrong = []
    for key, value in ours.items():
        meta = on_disk[key]
        shape = tuple(getattr(value, "shape", ()))
        if isinstance(meta, TensorStorageMetadata) and tuple(meta.size) != shape:
            wrong.append(f"{key} {tuple(meta.size)} vs {shape}")
    if wrong:
        raise CheckpointError(
            "checkpoint is from a different model", str(path), f"shapes differ (checkpoint vs model): {_keys(wrong)}"
        )
    if has_optim and not any(key.startswith("optim.") for key in saved):
        raise CheckpointError(
            "checkpoint holds no optimizer state",
            str(path),
            "it was saved without an optimizer; load with optimizer=None",
        )


def _copy(state: Any) -> Any:
    torch = _torch()
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.utils._pytree import tree_map_only

    return tree_map_only(torch.Tensor, lambda t: t.detach().clone(), state)


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
    _check_model(model, optimizer)
    _torch()
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    where = Path(path)
    rank, world = _world()
    # get_state_dict gives a fresh optimizer zero-filled state to load into; undone on failure.
    fresh_optimizer = optimizer is not None and not optimizer.state
    try:
        try:
            info = _read_info(where)
            metadata = _read_metadata(where, FileSystemReader)
            state = _state_dict(model, optimizer)
            _validate(where, metadata.state_dict_metadata, state["model"], optimizer is not None)
            mine = None
        except CheckpointError as exc:
            mine = exc
        # Every rank must agree before the collective read: one rank that cannot see the
        # files (a node-local path) would otherwise leave the others waiting in DCP.
        _agree(mine, where)
        saved_world = int(info.get("world_size", 1))
        rng_key = f"rank{rank}"
        want_rng = restore_rng and saved_world == world and f"rng.{rng_key}" in metadata.state_dict_metadata
        target = _copy(state)
        if want_rng:
            target["rng"] = {rng_key: b""}
        try:
            dcp_load(target, storage_reader=FileSystemReader(where), no_dist=world == 1)
        except (Exception, CheckpointException) as exc:
            raise CheckpointError("checkpoint could not be loaded", str(where), _first_line(exc)) from None
    except CheckpointError:
        if fresh_optimizer and optimizer is not None:
            optimizer.state.clear()
        raise
    if optimizer is None:
        set_model_state_dict(model, target["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"])
    if want_rng:
        _restore_rng(target["rng"][rng_key])
    elif restore_rng and rank == 0:
        log.info("checkpoint: RNG states not restored (saved by %d ranks, loading on %d)", saved_world, world)
    step = int(info["step"])
    if rank == 0:
        log.info("checkpoint: loaded step %d from %s", step, where)
    return Loaded(step=step, path=where, extra=dict(info.get("extra") or {}), world_size=saved_world)


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
    rank, _ = _world()
    found: tuple[str, str | None] | None = None
    if rank == 0:
        try:
            found = (str(latest(directory) or ""), None)
        except CheckpointError as exc:
            found = ("", exc.line())
    chosen, problem = _broadcast(found)
    if problem is not None:
        raise CheckpointError("cannot look for checkpoints", str(directory), f"rank 0: {problem}")
    if not chosen:
        if rank == 0:
            log.info("checkpoint: no complete checkpoint in %s; starting fresh", directory)
        return None
    return load(chosen, model, optimizer, restore_rng=restore_rng)
