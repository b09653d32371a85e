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

Every wrapper checks what it is given first: a module that is already
wrapped, parameters on another device than this rank's, a dtype the device
cannot compute in, an unknown strategy — each is a one-line
:class:`~ezpz.errors.DistError`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, cast

from ezpz.errors import DistError, closest, plural
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.ranks import rank_info
from ezpz.runtime import dist as ezdist
from ezpz.runtime.profiling import attach_step_profiler

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh

__all__ = [
    "STRATEGIES",
    "choose_strategy",
    "find_blocks",
    "hsdp_mesh",
    "wrap_ddp",
    "wrap_fsdp",
    "wrap_hsdp",
    "wrap_model",
]

log = get_logger("ezpz.wrap")

Strategy = Literal["auto", "ddp", "fsdp", "hsdp"]
STRATEGIES = ("auto", "ddp", "fsdp", "hsdp")
#: Names of the two HSDP mesh dimensions, outer first.
HSDP_DIMS = ("replicate", "shard")
#: Fraction of one rank's device memory the DDP training state may use.
DDP_MEMORY_FRACTION = 0.5
#: Bytes of training state per parameter byte: weights, grads, two Adam moments.
STATE_MULTIPLIER = 4

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


def _torch() -> Any:
    return require("torch", "torch")


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype | None:
    """Turn ``"bf16"``/``torch.bfloat16``/... into a dtype this device can compute in."""
    if dtype is None:
        return None
    torch = _torch()
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


def _already_wrapped(model: nn.Module) -> str | None:
    # torch loads only inside the helpers that need it.
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, DistributedDataParallel | FSDPModule) or kind == "FullyShardedDataParallel":
            return f"{name or 'the model'} is {kind}"
    return None


def _check_model(model: object, device_type: str, allow_meta: bool) -> None:
    torch = _torch()
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


def _world() -> int:
    return ezdist.get_world_size() if ezdist._dist() is not None else 1


def wrap_ddp(model: nn.Module, dtype: str | torch.dtype | None = None, **ddp_kwargs: Any) -> nn.Module:
    """Wrap ``model`` in :class:`~torch.nn.parallel.DistributedDataParallel`.

    DDP has no mixed-precision policy: a ``dtype`` other than float32 casts
    the parameters (pure low-precision training), and the log says so.
    ``ddp_kwargs`` go to DDP unchanged.  One rank: the model, unchanged.
    """
    torch = _torch()
    device_type = str(ezdist.get_torch_device())
    _check_model(model, device_type, allow_meta=False)
    value = resolve_dtype(dtype, device_type)
    if _world() == 1:
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


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """Return the modules FSDP shards one by one before the root.

    The blocks are the children of the outermost ``nn.ModuleList`` containers
    (transformer layers); a model without one uses its direct children that
    hold parameters.
    """
    torch = _torch()
    blocks: list[nn.Module] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in taken):
            continue
        if isinstance(module, torch.nn.ModuleList):
            for child_name, child in module.named_children():
                if any(True for _ in child.parameters()):
                    blocks.append(child)
                    taken.append(f"{name}.{child_name}" if name else child_name)
    if blocks:
        return blocks
    return [child for child in model.children() if any(True for _ in child.parameters())]


def _sync_from_rank0(model: nn.Module) -> None:
    """Broadcast rank 0's parameters and buffers so every rank shards the same model."""
    dist = _torch().distributed
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type != "meta":
            dist.broadcast(tensor.data, src=0)


def wrap_fsdp(
    model: nn.Module,
    dtype: str | torch.dtype | None = None,
    reshard_after_forward: bool = True,
    device_mesh: DeviceMesh | None = None,
    sync_module_states: bool = True,
) -> nn.Module:
    """Shard ``model`` with FSDP2: every block (:func:`find_blocks`), then the root.

    Args:
        model: the bare model, on this rank's device (or the meta device).
        dtype: compute dtype of the mixed-precision policy; gradients are
            reduced in float32.  ``None`` keeps the parameters' dtype.
        reshard_after_forward: free gathered parameters after forward.
        device_mesh: mesh to shard over (default: all ranks, 1-D).
        sync_module_states: broadcast rank 0's weights first so ranks that
            initialised differently still shard one model.

    Returns the same module object, now an ``FSDPModule``; one rank: unchanged.
    """
    torch = _torch()
    # torch is loaded (just above, with a clear error when missing); these are its submodules.
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device_type = str(ezdist.get_torch_device())
    _check_model(model, device_type, allow_meta=True)
    value = resolve_dtype(dtype, device_type)
    if _world() == 1:
        log.info("wrap_fsdp: world size 1, model returned unchanged")
        return model
    mesh = device_mesh or init_device_mesh(device_type, (_world(),))
    if sync_module_states:
        _sync_from_rank0(model)
    policy = MixedPrecisionPolicy(param_dtype=value, reduce_dtype=torch.float32 if value else None)
    blocks = find_blocks(model)
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    log.info(
        "wrap_fsdp: sharded %s + root over %s (mesh %s, dtype=%s)",
        plural(len(blocks), "block"),
        plural(mesh.size(), "rank"),
        "x".join(map(str, mesh.shape)),
        value,
    )
    return model


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _check_shard_size(shard_size: object, world: int) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DistError("shard_size must be a positive integer", repr(shard_size), f"valid: {_divisors(world)}")


def hsdp_mesh(shard_size: int | None = None, device_type: str | None = None) -> DeviceMesh:
    """Return the 2-D ``(replicate, shard)`` mesh HSDP runs on.

    ``shard_size`` ranks share one copy of the parameters (default: the
    ranks per node, ``LOCAL_WORLD_SIZE``); ``world_size // shard_size``
    such groups replicate it.  Consecutive ranks form a shard group, which
    matches launchers that place ranks node by node.

    Raises:
        DistError: ``shard_size`` is not a positive integer that divides the
            world size (the message lists the valid ones).
    """
    # torch loads only when a model is wrapped
    from torch.distributed.device_mesh import init_device_mesh

    world = _world()
    given = shard_size
    if shard_size is None:
        shard_size = ezdist._STATE.local_world_size if ezdist._STATE.ready else rank_info().local_world_size
    _check_shard_size(shard_size, world)
    if world % shard_size:
        origin = "shard_size" if given is not None else "ranks per node (default shard_size)"
        raise DistError(
            f"world size is not a multiple of the {origin}",
            f"world_size={world}, shard_size={shard_size}",
            f"pass shard_size= one of {_divisors(world)}, or launch the same number of ranks on every node",
        )
    device = device_type or str(ezdist.get_torch_device())
    return init_device_mesh(device, (world // shard_size, shard_size), mesh_dim_names=HSDP_DIMS)


def wrap_hsdp(
    model: nn.Module,
    dtype: str | torch.dtype | None = None,
    shard_size: int | None = None,
    reshard_after_forward: bool = True,
    device_mesh: DeviceMesh | None = None,
    sync_module_states: bool = True,
) -> nn.Module:
    """Hybrid-shard ``model``: FSDP2 within each group of ``shard_size`` ranks, replicated across groups.

    Args:
        model: the bare model, on this rank's device (or the meta device).
        dtype: compute dtype, as for :func:`wrap_fsdp`.
        shard_size: ranks per shard group (default: ranks per node); see
            :func:`hsdp_mesh`.
        reshard_after_forward: free gathered parameters after forward.
        device_mesh: a ready 2-D ``(replicate, shard)`` mesh instead of
            ``shard_size``.
        sync_module_states: broadcast rank 0's weights first.

    Returns the same module object, now an ``FSDPModule``; one rank: unchanged.

    Raises:
        DistError: what :func:`wrap_fsdp` refuses, a ``shard_size`` that does
            not divide the world, or a ``device_mesh`` that is not 2-D.
    """
    device_type = str(ezdist.get_torch_device())
    _check_model(model, device_type, allow_meta=True)
    resolve_dtype(dtype, device_type)
    if device_mesh is not None:
        if device_mesh.ndim != 2:
            raise DistError(
                "HSDP needs a 2-D device mesh (replicate, shard)",
                f"{device_mesh.ndim}-D mesh of shape {tuple(device_mesh.shape)}",
                "build one with ezpz.wrap.hsdp_mesh(shard_size) or pass shard_size instead",
            )
        if shard_size is not None:
            raise DistError("give shard_size or device_mesh, not both", f"shard_size={shard_size}", "drop one")
    if shard_size is not None:
        _check_shard_size(shard_size, _world())
    if _world() == 1:
        log.info("wrap_hsdp: world size 1, model returned unchanged")
        return model
    mesh = device_mesh if device_mesh is not None else hsdp_mesh(shard_size, device_type)
    replicas, shards = mesh.shape
    log.info("wrap_hsdp: %s x %d-way sharding", plural(replicas, "replica group"), shards)
    return wrap_fsdp(
        model,
        dtype=dtype,
        reshard_after_forward=reshard_after_forward,
        device_mesh=mesh,
        sync_module_states=sync_module_states,
    )


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
        device_type = str(ezdist.get_torch_device())
        _check_model(model, device_type, allow_meta=True)
        param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        local = ezdist._STATE.local_world_size if ezdist._STATE.ready else 1
        wanted, reason = choose_strategy(param_bytes, _device_memory(device_type, local))
        if _world() > 1:
            log.info("wrap_model: strategy=auto chose %s: %s", wanted, reason)
    if shard_size is not None and wanted != "hsdp":
        raise DistError(
            "shard_size is for strategy='hsdp' only",
            f"shard_size={shard_size} with strategy={wanted}",
            "drop shard_size or use strategy='hsdp'",
        )
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
