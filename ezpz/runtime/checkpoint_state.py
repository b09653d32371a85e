"""What a checkpoint holds: the model's and optimizer's state, each rank's RNG, and its check.

The torch side of :mod:`ezpz.runtime.checkpoint`; torch loads only when a
checkpoint is saved or loaded, never on import.
"""

from __future__ import annotations

import pickle
import random
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import CheckpointError
from ezpz.extras import require
from ezpz.runtime.checkpoint_dir import error_line

if TYPE_CHECKING:
    from torch import nn
    from torch.optim import Optimizer

__all__ = [
    "assign",
    "check_model",
    "copy_state",
    "read_metadata",
    "set_rng_state",
    "rng_state",
    "state_dict",
    "torch_module",
    "validate",
]

_SHOW = 4  # keys named in a mismatch message


def torch_module() -> Any:
    """Import torch (one line naming the extra when missing) and silence DCP's single-process warning."""
    torch = require("torch", "torch")
    # DCP warns on every single-process save/load; ezpz passes no_dist=True on purpose there.
    warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
    return torch


def check_model(model: object, optimizer: object) -> None:
    """Raise unless ``model`` is a torch module and ``optimizer`` an optimizer or ``None``."""
    torch = torch_module()
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError("expected a torch.nn.Module", type(model).__name__, "pass the model (wrapped or not)")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise CheckpointError(
            "expected a torch.optim.Optimizer", type(optimizer).__name__, "pass the optimizer or None"
        )


def state_dict(model: nn.Module, optimizer: Optimizer | None) -> dict[str, Any]:
    """The model's (and optimizer's) state as DCP saves it: the bare model's keys on every wrap."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def rng_state() -> bytes:
    """Pickle the RNG states of this rank: python, torch CPU, CUDA when used, numpy when imported."""
    torch = torch_module()
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    return pickle.dumps(state)


def set_rng_state(blob: bytes) -> None:
    """Restore the RNG states :func:`rng_state` saved."""
    torch = torch_module()
    state = pickle.loads(blob)  # noqa: S301 - written by save() into the user's own checkpoint
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = sys.modules.get("numpy")
    if "numpy" in state and numpy is not None:
        numpy.random.set_state(state["numpy"])


def read_metadata(path: Path, reader: Any) -> Any:
    """DCP's metadata of the checkpoint at ``path``, read with ``reader`` (a ``FileSystemReader``)."""
    try:
        return reader(path).read_metadata()
    except Exception as exc:
        raise CheckpointError("unreadable checkpoint metadata", str(path), error_line(exc)) from None


def _keys(names: list[str]) -> str:
    """The first few of ``names`` and how many more."""
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def validate(path: Path, saved: Mapping[str, Any], model_state: Mapping[str, Any], has_optim: bool) -> None:
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


def copy_state(state: Any) -> Any:
    """A copy of ``state`` with every tensor cloned: loading reads into it, not into the model."""
    torch = torch_module()
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.utils._pytree import tree_map_only

    return tree_map_only(torch.Tensor, lambda t: t.detach().clone(), state)


def assign(model: nn.Module, optimizer: Optimizer | None, loaded: Mapping[str, Any]) -> None:
    """Put the state read into ``loaded`` (``model``, and ``optim`` with an optimizer) into the model and optimizer."""
    # torch loads only when a checkpoint is saved or loaded, never on import
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_state_dict

    if optimizer is None:
        set_model_state_dict(model, loaded["model"])
    else:
        set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"])
