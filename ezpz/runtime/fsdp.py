"""FSDP2 and HSDP: shard a model block by block, over all ranks or within each node.

:func:`wrap_fsdp` applies :func:`torch.distributed.fsdp.fully_shard` to every
block (:func:`find_blocks`) and then to the root; :func:`wrap_hsdp` does the
same on the 2-D ``(replicate, shard)`` mesh of :func:`hsdp_mesh`.  Both are
also in :mod:`ezpz.runtime.wrap`, which chooses between them and DDP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ezpz.errors import DistError, plural
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.ranks import rank_info
from ezpz.runtime import dist as ezdist
from ezpz.runtime.wrap_checks import check_model, resolve_dtype, world_size

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.distributed.device_mesh import DeviceMesh

__all__ = ["HSDP_DIMS", "find_blocks", "hsdp_mesh", "wrap_fsdp", "wrap_hsdp"]

log = get_logger("ezpz.wrap")

#: Names of the two HSDP mesh dimensions, outer first.
HSDP_DIMS = ("replicate", "shard")


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """Return the modules FSDP shards one by one before the root.

    The blocks are the children of the outermost ``nn.ModuleList`` containers
    (transformer layers); a model without one uses its direct children that
    hold parameters.
    """
    torch = require("torch", "torch")
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
    dist = require("torch.distributed", "torch")
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
    torch = require("torch", "torch")
    # torch is loaded (just above, with a clear error when missing); these are its submodules.
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device_type = str(ezdist.get_torch_device())
    check_model(model, device_type, allow_meta=True)
    value = resolve_dtype(dtype, device_type)
    if world_size() == 1:
        log.info("wrap_fsdp: world size 1, model returned unchanged")
        return model
    mesh = device_mesh or init_device_mesh(device_type, (world_size(),))
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
    """The divisors of ``n``, for an error message."""
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _check_shard_size(shard_size: object, world: int) -> None:
    """Raise unless ``shard_size`` is a positive integer."""
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

    world = world_size()
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
    check_model(model, device_type, allow_meta=True)
    resolve_dtype(dtype, device_type)
    _check_hsdp_args(shard_size, device_mesh)
    if world_size() == 1:
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


def _check_hsdp_args(shard_size: int | None, device_mesh: DeviceMesh | None) -> None:
    """Raise on a ``device_mesh`` that is not 2-D, on both it and ``shard_size``, or on a bad ``shard_size``."""
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
        _check_shard_size(shard_size, world_size())
