"""What every wrapper checks before it wraps: the model, where its parameters are, the dtype.

Each refusal is one :class:`~ezpz.errors.DistError` line (see :mod:`ezpz.runtime.wrap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ezpz.errors import DistError, closest
from ezpz.extras import require
from ezpz.runtime import dist as ezdist

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["check_model", "resolve_dtype", "world_size"]

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype | None:
    """Turn ``"bf16"``/``torch.bfloat16``/... into a dtype this device can compute in."""
    if dtype is None:
        return None
    torch = require("torch", "torch")
    if isinstance(dtype, str):
        name = _DTYPE_NAMES.get(dtype.strip().lower())
        if name is None:
            raise DistError("unknown dtype", dtype, closest(dtype, _DTYPE_NAMES))
        value = getattr(torch, name)
    elif isinstance(dtype, torch.dtype):
        value = dtype
    else:
        raise DistError("dtype must be a string or torch.dtype", type(dtype).__name__, "e.g. 'bf16'")
    if value not in (torch.float32, torch.bfloat16, torch.float16):
        raise DistError("dtype must be a floating type for training", str(value), "valid: fp32, bf16, fp16")
    unsupported = (
        (device_type == "cuda" and value == torch.bfloat16 and not torch.cuda.is_bf16_supported())
        or (device_type == "cpu" and value == torch.float16)
        or (device_type == "mps" and value == torch.bfloat16 and not torch.backends.mps.is_macos_or_newer(14, 0))
    )
    if unsupported:
        raise DistError(
            f"device {device_type} cannot train in this dtype",
            str(value).removeprefix("torch."),
            "use float32 or bfloat16" if device_type == "cpu" else "use float32 or float16",
        )
    return value


def _already_wrapped(model: nn.Module) -> str | None:
    """What in ``model`` is already DDP or FSDP, or ``None``."""
    # torch loads only inside the helpers that need it.
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, DistributedDataParallel | FSDPModule) or kind == "FullyShardedDataParallel":
            return f"{name or 'the model'} is {kind}"
    return None


def check_model(model: object, device_type: str, allow_meta: bool) -> None:
    """Raise unless ``model`` is a bare module with every parameter on this rank's device (or meta, if allowed)."""
    torch = require("torch", "torch")
    if not isinstance(model, torch.nn.Module):
        raise DistError("expected a torch.nn.Module", type(model).__name__, "pass the model itself")
    module = cast("nn.Module", model)
    wrapped = _already_wrapped(module)
    if wrapped:
        raise DistError("model is already wrapped", wrapped, "wrap the bare model once")
    expected = cast("torch.device", ezdist.get_torch_device(as_torch_device=True))
    for name, param in module.named_parameters():
        device = param.device
        if device.type == "meta" and allow_meta:
            continue
        same_index = expected.index is None or device.index in (None, expected.index)
        if device.type != expected.type or not same_index:
            raise DistError(
                "parameter is on the wrong device",
                f"{name} on {device}, this rank uses {expected}",
                "move the model first: model.to(ezpz.get_torch_device(as_torch_device=True))",
            )


def world_size() -> int:
    """The number of ranks in the process group (1 without one)."""
    return ezdist.get_world_size() if ezdist._dist() is not None else 1
