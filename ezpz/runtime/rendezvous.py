"""Where the ranks meet: the rendezvous address and port, and meeting there in time.

Step 4 of :func:`ezpz.runtime.dist.setup_torch` (its module docstring gives
the order :func:`resolve_rendezvous` follows); :func:`init_process_group`
meets at the store within the start-up timeout and creates the default group.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ezpz.errors import DistError
from ezpz.extras import require
from ezpz.log import get_logger
from ezpz.net import free_port
from ezpz.ranks import RankInfo

__all__ = ["TRUSTED_LAUNCH_VARS", "Rendezvous", "init_process_group", "parse_port", "resolve_rendezvous"]

log = get_logger("ezpz.dist")

#: Variables proving MASTER_ADDR/MASTER_PORT were exported for this job.
TRUSTED_LAUNCH_VARS = ("TORCHELASTIC_RUN_ID", "EZPZ_LAUNCH_ID")


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


def parse_port(raw: str | int, where: str) -> int:
    """``raw`` as a TCP port; raise naming ``where`` it came from when it is not one."""
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
        chosen = port if port is not None else parse_port(raw_port, "MASTER_PORT")
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
        chosen = port if port is not None else parse_port(raw_port, "MASTER_PORT")
        return Rendezvous(addr=addr, port=chosen, how="environment")
    raise DistError(
        "cannot agree on a rendezvous address",
        f"world_size={info.world_size}, MASTER_ADDR={addr or 'unset'}, MASTER_PORT={raw_port or 'unset'}",
        "launch with 'ezpz launch' or torchrun, or install mpi4py: pip install 'ezpz[mpi]'",
    )


def init_process_group(torch: Any, info: RankInfo, backend: str, rdv: Rendezvous, init_timeout: timedelta) -> None:
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
