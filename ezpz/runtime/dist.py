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

Torch and mpi4py are imported inside the functions that need them, through
:func:`ezpz.extras.require`, so ``import ezpz.runtime.dist`` stays cheap.
"""

from __future__ import annotations

import importlib.util
import os
import random
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ezpz.errors import DistError, closest
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.net import free_port
from ezpz.ranks import RankInfo, rank_info
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
#: Seconds the ranks wait for each other at start-up.
DEFAULT_INIT_TIMEOUT = 600.0
#: Variables proving MASTER_ADDR/MASTER_PORT were exported for this job.
TRUSTED_LAUNCH_VARS = ("TORCHELASTIC_RUN_ID", "EZPZ_LAUNCH_ID")


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


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks meet.

    Attributes:
        addr: host of rank 0's store.
        port: TCP port of the store.
        how: how it was agreed (``"launcher"``, ``"mpi"``, ``"environment"``).
        agent_store: torchrun's agent hosts the store, so every rank is a client.
    """

    addr: str
    port: int
    how: str
    agent_store: bool = False


_STATE = _State()


def _torch() -> Any:
    return require("torch", "torch")


def detect_device_type(environ: Mapping[str, str] | None = None, torch_module: Any | None = None) -> str:
    """Return the device type: ``TORCH_DEVICE`` if set, else cuda, xpu, mps, cpu.

    Raises :class:`DistError` for an unknown ``TORCH_DEVICE`` or one this
    machine does not have.
    """
    env = os.environ if environ is None else environ
    torch = _torch() if torch_module is None else torch_module
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


def _backend_available(name: str) -> bool:
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
    available: Callable[[str], bool] = _backend_available,
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


def _parse_port(raw: str | int, where: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise DistError(f"{where} is not a port number", raw, "use an integer 1..65535") from None
    if not 0 < port < 65536:
        raise DistError(f"{where} is out of range", port, "use an integer 1..65535")
    return port


def _mpi_comm(world_size: int) -> Any | None:
    """Return MPI.COMM_WORLD when mpi4py is installed and spans this job, else None."""
    try:
        mpi = require("mpi4py.MPI", "mpi")
    except Exception as exc:  # missing extra, or an MPI library that fails to load
        log.debug("mpi4py unusable for the rendezvous: %s", exc)
        return None
    comm = mpi.COMM_WORLD
    size = comm.Get_size()
    if size == 1:
        # Started outside MPI (srun without PMI, torchrun): a singleton cannot agree.
        return None
    if size != world_size:
        raise DistError(
            "MPI and the environment disagree about the world size",
            f"MPI size={size} environment={world_size}",
            "a stale RANK/WORLD_SIZE is probably set; unset it or launch with ezpz launch",
        )
    return comm


def _agree_over_mpi(comm: Any, info: RankInfo, port: int | None) -> Rendezvous:
    """Rank 0 picks a free port; every rank learns it and rank 0's host in one allgather."""
    host = socket.gethostname()
    offer = (host, port or free_port()) if info.rank == 0 else None
    replies = comm.allgather((host, offer))
    hosts = {h for h, _ in replies}
    root_host, root_port = next(o for _, o in replies if o is not None)
    addr = "127.0.0.1" if len(hosts) == 1 else root_host
    return Rendezvous(addr=addr, port=root_port, how="mpi")


def resolve_rendezvous(
    info: RankInfo,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
    mpi_comm: Callable[[int], Any | None] | None = None,
) -> Rendezvous:
    """Decide where the ranks meet (see the module docstring for the order).

    ``port`` (the caller's choice) replaces ``MASTER_PORT`` except under
    torchrun's agent store, whose port is fixed by the agent.  ``mpi_comm``
    returns the MPI communicator spanning the job, or None (default:
    mpi4py's COMM_WORLD when it is installed and spans the job).
    """
    env = os.environ if environ is None else environ
    addr, raw_port = env.get("MASTER_ADDR", "").strip(), env.get("MASTER_PORT", "").strip()
    trusted = next((v for v in TRUSTED_LAUNCH_VARS if env.get(v)), None)
    agent_store = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if trusted and addr and (raw_port or port):
        if agent_store and port is not None:
            log.warning("ignoring port=%s: torchrun's agent hosts the store", port)
            port = None
        chosen = port if port is not None else _parse_port(raw_port, "MASTER_PORT")
        return Rendezvous(addr=addr, port=chosen, how=f"launcher ({trusted})", agent_store=agent_store)
    comm = (mpi_comm or _mpi_comm)(info.world_size)
    if comm is not None:
        if addr or raw_port:
            log.info("ignoring MASTER_ADDR/MASTER_PORT not exported for this job; agreeing over MPI")
        return _agree_over_mpi(comm, info, port)
    if addr and (raw_port or port):
        log.warning(
            "using MASTER_ADDR=%s MASTER_PORT=%s from the environment; no launcher vouches for them",
            addr,
            port or raw_port,
        )
        chosen = port if port is not None else _parse_port(raw_port, "MASTER_PORT")
        return Rendezvous(addr=addr, port=chosen, how="environment")
    raise DistError(
        "cannot agree on a rendezvous address",
        f"world_size={info.world_size}, MASTER_ADDR={addr or 'unset'}, MASTER_PORT={raw_port or 'unset'}",
        "launch with 'ezpz launch' or torchrun, or install mpi4py: pip install 'ezpz[mpi]'",
    )


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


def _set_device(torch: Any, device_type: str, local_rank: int) -> None:
    if device_type in ("cuda", "xpu"):
        module = getattr(torch, device_type)
        module.set_device(device_index(local_rank, module.device_count()))


def _seed(torch: Any, seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        # numpy is optional: seeded only when installed.
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)


def _init_process_group(torch: Any, info: RankInfo, backend: str, rdv: Rendezvous, init_timeout: timedelta) -> None:
    """Meet at the store within ``init_timeout``, then create the default group."""
    dist = torch.distributed
    if backend == "ccl":
        require("oneccl_bindings_for_pytorch", "torch")
    try:
        store = dist.TCPStore(
            host_name=rdv.addr,
            port=rdv.port,
            world_size=info.world_size,
            is_master=info.rank == 0 and not rdv.agent_store,
            timeout=init_timeout,
            wait_for_workers=not rdv.agent_store,
            multi_tenant=not rdv.agent_store,
        )
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistError(
            f"ranks did not meet within {init_timeout.total_seconds():g} s",
            f"{rdv.addr}:{rdv.port} via {rdv.how}, rank {info.rank} of {info.world_size}",
            f"check MASTER_ADDR/MASTER_PORT and that every rank started ({first[:160]})",
        ) from None
    dist.init_process_group(
        backend=backend,
        store=dist.PrefixStore("default_pg", store),
        rank=info.rank,
        world_size=info.world_size,
    )


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
        port = _parse_port(port, "port")
    dist = torch.distributed
    if dist.is_initialized():
        if _STATE.ready:
            return _STATE.rank
        raise DistError(
            "torch.distributed was initialised outside ezpz",
            f"backend={dist.get_backend()}",
            "call ezpz.setup_torch() instead of init_process_group, or skip it",
        )
    _set_device(torch, device_type, info.local_rank)
    rdv = None
    if info.world_size > 1:
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
            _init_process_group(torch, info, chosen_backend, rdv, init_timeout)
        except BaseException:
            _restore_env()
            raise
    if seed is not None:
        _seed(torch, seed + info.rank)
    _STATE.rank, _STATE.world_size = info.rank, info.world_size
    _STATE.local_rank, _STATE.local_world_size = info.local_rank, info.local_world_size
    _STATE.device_type, _STATE.backend, _STATE.rendezvous = device_type, chosen_backend, rdv
    _STATE.ready = True
    where = f"{rdv.addr}:{rdv.port} via {rdv.how}" if rdv else "single process, no process group"
    log.info(
        "setup_torch: world_size=%d device=%s backend=%s rendezvous=%s (ranks from %s)",
        info.world_size,
        device_type,
        chosen_backend,
        where,
        info.source,
    )
    return info.rank


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

    checkpoints = sys.modules.get("ezpz.runtime.checkpoint")  # loaded only by a script that saves
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
