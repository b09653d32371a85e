"""Wrap a model for data-parallel training: DDP or FSDP2, chosen for you or by you.

``model = ezpz.wrap_model(model)`` after :func:`ezpz.setup_torch`:

* ``strategy="auto"`` picks DDP when the model's training state (weights,
  gradients and two optimizer moments: four times the parameter bytes) fits
  in half of one rank's device memory, FSDP otherwise, and logs the choice
  and the numbers behind it (:func:`choose_strategy`).
* FSDP is FSDP2 (:func:`torch.distributed.fsdp.fully_shard`), applied to every
  block and then to the root, with a :class:`MixedPrecisionPolicy` computing
  in ``dtype`` and reducing gradients in float32.
* HSDP (``strategy="hsdp"``, :func:`wrap_hsdp`) is FSDP2 on a 2-D mesh:
  parameters are sharded within a group of ``shard_size`` ranks (default:
  the ranks of one node) and replicated across the groups (nodes), so the
  all-gathers stay on the node's fast links and only the gradient
  all-reduce crosses nodes.
* With one rank the model comes back unchanged (one info line).

FSDP2 and HSDP live in :mod:`ezpz.runtime.fsdp`, the checks in
:mod:`ezpz.runtime.wrap_checks`; their public names are also here.  Every
wrapper checks what it is given first: a module that is already
wrapped, parameters on another device than this rank's, a dtype the device
cannot compute in, an unknown strategy — each is a one-line
:class:`~ezpz.errors.DistError`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from ezpz.errors import DistError, closest
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.runtime import dist as ezdist
from ezpz.runtime.fsdp import HSDP_DIMS, find_blocks, hsdp_mesh, wrap_fsdp, wrap_hsdp
from ezpz.runtime.profiling import attach_step_profiler
from ezpz.runtime.wrap_checks import check_model, resolve_dtype, world_size

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh

__all__ = [
    "HSDP_DIMS",
    "STRATEGIES",
    "choose_strategy",
    "find_blocks",
    "hsdp_mesh",
    "resolve_dtype",
    "wrap_ddp",
    "wrap_fsdp",
    "wrap_hsdp",
    "wrap_model",
]

log = get_logger("ezpz.wrap")

Strategy = Literal["auto", "ddp", "fsdp", "hsdp"]
STRATEGIES = ("auto", "ddp", "fsdp", "hsdp")
#: Fraction of one rank's device memory the DDP training state may use.
DDP_MEMORY_FRACTION = 0.5
#: Bytes of training state per parameter byte: weights, grads, two Adam moments.
STATE_MULTIPLIER = 4


def _torch() -> Any:
    return require("torch", "torch")


def _device_memory(device_type: str, local_world_size: int) -> int:
    """Bytes of memory one rank may use on its device (host memory shared on cpu)."""
    torch = _torch()
    if device_type in ("cuda", "xpu"):
        module = getattr(torch, device_type)
        return int(module.get_device_properties(module.current_device()).total_memory)
    if device_type == "mps":
        return int(torch.mps.recommended_max_memory())
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total // max(local_world_size, 1))


def choose_strategy(param_bytes: int, memory_bytes: int) -> tuple[str, str]:
    """Return ``("ddp"|"fsdp", reason)`` for a model of ``param_bytes`` on ``memory_bytes``."""
    need = param_bytes * STATE_MULTIPLIER
    budget = int(memory_bytes * DDP_MEMORY_FRACTION)
    gib = 2**30
    figures = f"training state ~{need / gib:.2f} GiB vs {budget / gib:.2f} GiB budget per rank"
    if need <= budget:
        return "ddp", f"model fits on one device ({figures})"
    return "fsdp", f"model too large for one device ({figures})"


def wrap_ddp(model: nn.Module, dtype: str | torch.dtype | None = None, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`.

    DDP has no mixed-precision policy: a ``dtype`` other than float32 casts
    the parameters (pure low-precision training), and the log says so.
    ``ddp_kwargs`` go to DDP unchanged.  One rank: the model, unchanged.
    """
    torch = _torch()
    device_type = str(ezdist.get_torch_device())
    check_model(model, device_type, allow_meta=False)
    value = resolve_dtype(dtype, device_type)
    if world_size() == 1:
        log.info("wrap_ddp: world size 1, model returned unchanged")
        return model
    if value is not None and value != torch.float32:
        log.info("wrap_ddp: casting parameters to %s (DDP has no mixed-precision policy)", value)
        model = model.to(value)
    if device_type in ("cuda", "xpu"):
        index = getattr(torch, device_type).current_device()
        ddp_kwargs.setdefault("device_ids", [index])
        ddp_kwargs.setdefault("output_device", index)
    return torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def wrap_model(
    model: nn.Module,
    strategy: Strategy | str = "auto",
    dtype: str | torch.dtype | None = None,
    reshard_after_forward: bool = True,
    device_mesh: DeviceMesh | None = None,
    shard_size: int | None = None,
    profile: str | None = None,
    profile_dir: str | os.PathLike[str] = "ezpz-profiles",
) -> nn.Module:
    """Wrap ``model`` for data-parallel training with DDP or FSDP2.

    Args:
        model: the bare model on this rank's device.
        strategy: ``"auto"`` (log and pick), ``"ddp"``, ``"fsdp"`` or
            ``"hsdp"`` (:func:`wrap_hsdp`).
        dtype: compute dtype (FSDP mixed precision; DDP casts parameters).
        reshard_after_forward: FSDP/HSDP only; see :func:`wrap_fsdp`.
        device_mesh: FSDP/HSDP only; the mesh to shard over (2-D for HSDP).
        shard_size: HSDP only; ranks per shard group (default: ranks per node).
        profile: opt-in step profiler, ``"torch"`` or ``"pyinstrument"``
            (see :mod:`ezpz.runtime.profiling`); ``None`` (default) adds nothing.
        profile_dir: where the profiler writes its per-rank output.

    Returns the wrapped model (the same object with one rank).
    """
    wanted = str(strategy).strip().lower()
    if wanted not in STRATEGIES:
        raise DistError("unknown strategy", str(strategy), closest(wanted, STRATEGIES))
    if wanted == "auto":
        wanted = _auto_strategy(model)
    _check_hsdp_only(shard_size, wanted)
    if wanted == "ddp":
        wrapped = wrap_ddp(model, dtype=dtype)
    elif wanted == "hsdp":
        wrapped = wrap_hsdp(
            model,
            dtype=dtype,
            shard_size=shard_size,
            reshard_after_forward=reshard_after_forward,
            device_mesh=device_mesh,
        )
    else:
        wrapped = wrap_fsdp(model, dtype=dtype, reshard_after_forward=reshard_after_forward, device_mesh=device_mesh)
    if profile is not None:
        attach_step_profiler(wrapped, kind=profile, outdir=profile_dir)
    return wrapped


def _auto_strategy(model: nn.Module) -> str:
    """``"ddp"`` or ``"fsdp"`` for ``model`` on this rank's device (:func:`choose_strategy`), logged."""
    device_type = str(ezdist.get_torch_device())
    check_model(model, device_type, allow_meta=True)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    local = ezdist._STATE.local_world_size if ezdist._STATE.ready else 1
    wanted, reason = choose_strategy(param_bytes, _device_memory(device_type, local))
    if world_size() > 1:
        log.info("wrap_model: strategy=auto chose %s: %s", wanted, reason)
    return wanted


def _check_hsdp_only(shard_size: int | None, strategy: str) -> None:
    """Raise when ``shard_size`` is given for a strategy other than HSDP."""
    if shard_size is not None and strategy != "hsdp":
        raise DistError(
            "shard_size is for strategy='hsdp' only",
            f"shard_size={shard_size} with strategy={strategy}",
            "drop shard_size or use strategy='hsdp'",
        )
