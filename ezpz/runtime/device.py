"""Which device and which backend a rank uses, and which of its devices.

:func:`detect_device_type` and :func:`resolve_backend` are steps 1 and 2 of
:func:`ezpz.runtime.dist.setup_torch`; :func:`device_index` picks this rank's
device among those it sees; :func:`collective_device` is where a process
group's collectives want their tensors.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

from ezpz.errors import DistError, closest
from ezpz.extras import require

__all__ = [
    "DEFAULT_BACKENDS",
    "DEVICE_TYPES",
    "VALID_BACKENDS",
    "backend_available",
    "collective_device",
    "detect_device_type",
    "device_index",
    "resolve_backend",
    "set_device",
]

#: Device types in detection order.
DEVICE_TYPES = ("cuda", "xpu", "mps", "cpu")
#: Default backend per device type (xpu falls back to oneCCL's ``ccl``).
DEFAULT_BACKENDS = {"cuda": "nccl", "xpu": "xccl", "mps": "gloo", "cpu": "gloo"}
#: Backends that can drive tensors on each device type.
VALID_BACKENDS: dict[str, tuple[str, ...]] = {
    "cuda": ("nccl", "gloo", "mpi"),
    "xpu": ("xccl", "ccl", "gloo", "mpi"),
    "mps": ("gloo",),
    "cpu": ("gloo", "mpi"),
}


def detect_device_type(environ: Mapping[str, str] | None = None, torch_module: Any | None = None) -> str:
    """Return the device type: ``TORCH_DEVICE`` if set, else cuda, xpu, mps, cpu.

    Raises :class:`DistError` for an unknown ``TORCH_DEVICE`` or one this
    machine does not have.
    """
    env = os.environ if environ is None else environ
    torch = require("torch", "torch") if torch_module is None else torch_module
    available = {
        "cuda": torch.cuda.is_available,
        "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
        "mps": lambda: torch.backends.mps.is_available(),
        "cpu": lambda: True,
    }
    wanted = env.get("TORCH_DEVICE", "").strip().lower()
    if wanted:
        # Accept "cuda:1" style values: the index is chosen from LOCAL_RANK.
        kind = wanted.split(":")[0]
        if kind not in available:
            raise DistError("unknown TORCH_DEVICE", wanted, closest(kind, DEVICE_TYPES))
        if not available[kind]():
            raise DistError(
                "TORCH_DEVICE names a device this machine does not have",
                wanted,
                "available: " + ", ".join(d for d in DEVICE_TYPES if available[d]()),
            )
        return kind
    return next(d for d in DEVICE_TYPES if available[d]())


def backend_available(name: str) -> bool:
    """Whether this torch build (plus installed bindings) provides backend ``name``."""
    dist = require("torch.distributed", "torch")
    checks: dict[str, Callable[[], bool]] = {
        "nccl": dist.is_nccl_available,
        "gloo": dist.is_gloo_available,
        "mpi": dist.is_mpi_available,
        "xccl": getattr(dist, "is_xccl_available", lambda: False),
        "ccl": lambda: importlib.util.find_spec("oneccl_bindings_for_pytorch") is not None,
    }
    return checks[name]()


def resolve_backend(
    device_type: str,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    available: Callable[[str], bool] = backend_available,
) -> str:
    """Return the process-group backend for ``device_type``.

    Order: ``backend`` (the caller's choice, never replaced), then
    ``TORCH_BACKEND``, then the device's default.  Raises :class:`DistError`
    for an unknown name, a backend that cannot drive the device, or one this
    torch build lacks.
    """
    env = os.environ if environ is None else environ
    source = "backend argument"
    chosen = (backend or "").strip().lower()
    if not chosen:
        chosen, source = env.get("TORCH_BACKEND", "").strip().lower(), "TORCH_BACKEND"
    all_backends = sorted({b for bs in VALID_BACKENDS.values() for b in bs})
    if not chosen:
        chosen = DEFAULT_BACKENDS[device_type]
        if chosen == "xccl" and not available("xccl") and available("ccl"):
            chosen = "ccl"
        source = f"default for {device_type}"
    elif chosen not in all_backends:
        raise DistError(f"unknown {source}", chosen, closest(chosen, all_backends))
    if chosen not in VALID_BACKENDS[device_type]:
        raise DistError(
            f"{source} does not work with device {device_type}",
            chosen,
            f"valid for {device_type}: {', '.join(VALID_BACKENDS[device_type])}",
        )
    if not available(chosen):
        raise DistError(
            f"this torch build has no {chosen} backend",
            chosen,
            f"choose another with TORCH_BACKEND ({', '.join(VALID_BACKENDS[device_type])})",
        )
    return chosen


def device_index(local_rank: int, count: int, environ: Mapping[str, str] | None = None) -> int:
    """Return the index of this rank's device among the ``count`` it sees.

    0 when ``ezpz launch --device-mask`` already narrowed what this rank sees
    (the rank shim set the variable ``EZPZ_DEVICE_VAR`` names); otherwise the
    local rank, modulo ``count``, as torchrun scripts do.
    """
    env = os.environ if environ is None else environ
    var = env.get("EZPZ_DEVICE_VAR", "")
    if var and env.get(var, "").strip():
        return 0
    return local_rank % max(count, 1)


def set_device(torch: Any, device_type: str, local_rank: int) -> None:
    """Make this rank's accelerator (:func:`device_index`) the current one; nothing on mps and cpu."""
    if device_type in ("cuda", "xpu"):
        module = getattr(torch, device_type)
        module.set_device(device_index(local_rank, module.device_count()))


def collective_device(torch: Any, dist: Any) -> Any:
    """The device the tensors of ``dist``'s default group's collectives live on.

    CPU for gloo and MPI; otherwise the current accelerator (CUDA's current
    device on a torch without ``torch.accelerator``).
    """
    backend = str(dist.get_backend()).lower()
    if "gloo" in backend or backend == "mpi":
        return torch.device("cpu")
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.current_accelerator() is not None:
        return accelerator.current_accelerator()
    return torch.device("cuda", torch.cuda.current_device())
