"""Distributed runtime: one call sets up torch.distributed wherever we were launched.

``rank = ezpz.setup_torch()`` replaces the boilerplate every distributed
training script rewrites:

1. **Device** — ``TORCH_DEVICE`` if set, else the first available of cuda,
   xpu, mps, cpu (:func:`detect_device_type`).
2. **Backend** — the ``backend`` argument if given (never overridden), else
   ``TORCH_BACKEND``, else the device's default: nccl, xccl (or oneCCL's
   ``ccl``), gloo (:func:`resolve_backend`).
3. **Ranks** — from whichever launcher started us (:func:`ezpz.ranks.rank_info`:
   torchrun, PMI/PALS, Open MPI, Slurm).
4. **Rendezvous** — ``MASTER_ADDR``/``MASTER_PORT`` are trusted only when the
   launcher that exported them is known to have done so for *this* job
   (``TORCHELASTIC_RUN_ID`` from torchrun, ``EZPZ_LAUNCH_ID`` from
   ``ezpz launch``).  Otherwise rank 0 picks a free port and shares it over
   MPI when mpi4py works; a value merely left over in the environment is
   used last, with a warning (:func:`resolve_rendezvous`).  Meeting is
   bounded by ``timeout`` so a mismatch fails with one line instead of
   hanging.
5. **Process group**, local device (:func:`device_index`: device 0 of what
   the rank sees under ``ezpz launch --device-mask``, else the local rank),
   per-rank seeds.

World size 1 takes a fast path: no process group, no rendezvous.

Steps 1 and 2 live in :mod:`ezpz.runtime.device`, step 4 in
:mod:`ezpz.runtime.rendezvous`; their public names are also here.  Torch and
mpi4py are imported inside the functions that need them, through
:func:`ezpz.extras.require`, so ``import ezpz.runtime.dist`` stays cheap.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ezpz.errors import DistError
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.ranks import RankInfo, rank_info
from ezpz.runtime.device import (
    DEFAULT_BACKENDS,
    DEVICE_TYPES,
    VALID_BACKENDS,
    detect_device_type,
    device_index,
    resolve_backend,
    set_device,
)
from ezpz.runtime.rendezvous import Rendezvous, init_process_group, parse_port, resolve_rendezvous
from ezpz.runtime.stop import arm

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_BACKENDS",
    "DEFAULT_INIT_TIMEOUT",
    "DEVICE_TYPES",
    "VALID_BACKENDS",
    "Rendezvous",
    "barrier",
    "cleanup",
    "detect_device_type",
    "device_index",
    "get_dist_info",
    "get_local_rank",
    "get_rank",
    "get_torch_backend",
    "get_torch_device",
    "get_world_size",
    "resolve_backend",
    "resolve_rendezvous",
    "setup_torch",
]

log = get_logger("ezpz.dist")

#: Seconds the ranks wait for each other at start-up.
DEFAULT_INIT_TIMEOUT = 600.0


@dataclass
class _State:
    """What :func:`setup_torch` decided, kept for the getters and :func:`cleanup`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device_type: str | None = None
    backend: str | None = None
    rendezvous: Rendezvous | None = None
    ready: bool = False
    saved_env: dict[str, str | None] = field(default_factory=dict)


_STATE = _State()


def _torch() -> Any:
    return require("torch", "torch")


def _as_timedelta(timeout: float | timedelta | None) -> timedelta:
    if timeout is None:
        return timedelta(seconds=DEFAULT_INIT_TIMEOUT)
    value = timeout if isinstance(timeout, timedelta) else timedelta(seconds=float(timeout))
    if value.total_seconds() <= 0:
        raise DistError("timeout must be positive", timeout, "give seconds, e.g. timeout=300")
    return value


def _set_env(values: Mapping[str, str]) -> None:
    """Export torchrun's variables for user code, remembering what to restore."""
    for key, value in values.items():
        if key not in _STATE.saved_env:
            _STATE.saved_env[key] = os.environ.get(key)
        os.environ[key] = value


def _seed(torch: Any, seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        # numpy is optional: seeded only when installed.
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)


def setup_torch(
    backend: str | None = None,
    port: int | None = None,
    seed: int | None = None,
    timeout: float | timedelta | None = None,
) -> int:
    """Set up torch.distributed for this process and return its global rank.

    Args:
        backend: process-group backend; used as given (validated, never
            replaced).  Default: ``TORCH_BACKEND`` or the device's default.
        port: rendezvous port for every rank (default: the launcher's
            ``MASTER_PORT``, or a free port chosen by rank 0).
        seed: when given, seeds ``random``, numpy and torch with ``seed + rank``.
        timeout: seconds (or a timedelta) the ranks wait for each other at
            start-up; default :data:`DEFAULT_INIT_TIMEOUT`.  Collectives keep
            torch's own timeout.

    Raises:
        DistError: a broken environment, an unknown or unavailable
            device/backend, or ranks that did not meet in time.
        MissingExtraError: torch is not installed.
    """
    torch = _torch()
    # A warning (SIGUSR2) from now on is kept for should_stop(), not fatal.
    arm()
    info = rank_info()
    init_timeout = _as_timedelta(timeout)
    device_type = detect_device_type()
    chosen_backend = resolve_backend(device_type, backend)
    if port is not None:
        port = parse_port(port, "port")
    if _initialised(torch.distributed):
        return _STATE.rank
    set_device(torch, device_type, info.local_rank)
    rdv = _join(torch, info, chosen_backend, port, init_timeout) if info.world_size > 1 else None
    if seed is not None:
        _seed(torch, seed + info.rank)
    _remember(info, device_type, chosen_backend, rdv)
    return info.rank


def _initialised(dist: Any) -> bool:
    """Whether an earlier :func:`setup_torch` made the group; raise when someone else did."""
    if not dist.is_initialized():
        return False
    if _STATE.ready:
        return True
    raise DistError(
        "torch.distributed was initialised outside ezpz",
        f"backend={dist.get_backend()}",
        "call ezpz.setup_torch() instead of init_process_group, or skip it",
    )


def _join(torch: Any, info: RankInfo, backend: str, port: int | None, init_timeout: timedelta) -> Rendezvous:
    """Agree where to meet, export torchrun's variables and create the group (variables restored on failure)."""
    rdv = resolve_rendezvous(info, port)
    _set_env(
        {
            "MASTER_ADDR": rdv.addr,
            "MASTER_PORT": str(rdv.port),
            "RANK": str(info.rank),
            "WORLD_SIZE": str(info.world_size),
            "LOCAL_RANK": str(info.local_rank),
            "LOCAL_WORLD_SIZE": str(info.local_world_size),
        }
    )
    try:
        init_process_group(torch, info, backend, rdv, init_timeout)
    except BaseException:
        _restore_env()
        raise
    return rdv


def _remember(info: RankInfo, device_type: str, backend: str, rdv: Rendezvous | None) -> None:
    """Keep what :func:`setup_torch` decided for the getters, and log it."""
    _STATE.rank, _STATE.world_size = info.rank, info.world_size
    _STATE.local_rank, _STATE.local_world_size = info.local_rank, info.local_world_size
    _STATE.device_type, _STATE.backend, _STATE.rendezvous = device_type, backend, rdv
    _STATE.ready = True
    where = f"{rdv.addr}:{rdv.port} via {rdv.how}" if rdv else "single process, no process group"
    log.info(
        "setup_torch: world_size=%d device=%s backend=%s rendezvous=%s (ranks from %s)",
        info.world_size,
        device_type,
        backend,
        where,
        info.source,
    )


def _dist() -> Any | None:
    """torch.distributed when torch is already imported and a group exists, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return None
    return torch.distributed


def get_rank() -> int:
    """Return this process's global rank (from the group, else the launcher's variables)."""
    dist = _dist()
    return dist.get_rank() if dist else (_STATE.rank if _STATE.ready else rank_info().rank)


def get_world_size() -> int:
    """Return the number of ranks (from the group, else the launcher's variables)."""
    dist = _dist()
    if dist:
        return dist.get_world_size()
    return _STATE.world_size if _STATE.ready else rank_info().world_size


def get_local_rank() -> int:
    """Return this process's rank on its node."""
    return _STATE.local_rank if _STATE.ready else rank_info().local_rank


def get_torch_device(as_torch_device: bool = False) -> str | torch.device:
    """Return the device type (``"cuda"``, ``"xpu"``, ``"mps"``, ``"cpu"``).

    With ``as_torch_device=True``, return this rank's :class:`torch.device`
    (``cuda:<local index>`` on accelerators).
    """
    device_type = _STATE.device_type or detect_device_type()
    if not as_torch_device:
        return device_type
    torch = _torch()
    if device_type in ("cuda", "xpu"):
        return torch.device(device_type, getattr(torch, device_type).current_device())
    return torch.device(device_type)


def get_torch_backend() -> str:
    """Return the process-group backend in use, or the one :func:`setup_torch` would pick."""
    return _STATE.backend or resolve_backend(str(get_torch_device()))


def get_dist_info() -> dict[str, Any]:
    """Return a flat dict describing this rank's distributed setup, for logging."""
    rdv = _STATE.rendezvous
    return {
        "rank": get_rank(),
        "local_rank": get_local_rank(),
        "world_size": get_world_size(),
        "local_world_size": _STATE.local_world_size if _STATE.ready else rank_info().local_world_size,
        "device": _STATE.device_type,
        "backend": _STATE.backend,
        "hostname": socket.gethostname(),
        "master_addr": rdv.addr if rdv else None,
        "master_port": rdv.port if rdv else None,
        "rendezvous": rdv.how if rdv else None,
        "initialized": _dist() is not None,
    }


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    dist = _dist()
    if dist is None:
        return
    if _STATE.backend == "nccl":
        torch = _torch()
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _restore_env() -> None:
    for key, value in _STATE.saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _STATE.saved_env.clear()


def cleanup() -> None:
    """Destroy the process group and restore the variables setup_torch exported.

    A pending asynchronous checkpoint save (:func:`ezpz.checkpoint.save`)
    is waited for first: its background write uses the process group.

    Never raises: a failure here is logged and does not change the exit status
    of a run that otherwise succeeded.
    """
    global _STATE
    # sys.modules only: a loaded checkpoint module means a save may be pending
    import sys

    checkpoints = sys.modules.get(
        "ezpz.runtime.checkpoint_save"
    )  # holds the pending save; loaded only by a script that saves
    try:
        if checkpoints is not None:
            checkpoints.wait()
    except Exception as exc:
        log.error("cleanup: the last checkpoint save failed: %s", exc)
    try:
        dist = _dist()
        if dist is not None:
            dist.destroy_process_group()
    except Exception as exc:
        log.warning("cleanup: destroying the process group failed: %s", exc)
    finally:
        _restore_env()
        _STATE = _State()
