"""``ezpz yeet-env``: broadcast an environment to node-local storage on every node of the job.

:func:`yeet_env` starts one worker per node (``python -m ezpz.envs``, through
:mod:`ezpz.launch.execute`); :func:`yeet_worker` is that worker: rank 0 streams
the tarred environment over MPI (mpi4py, the ``mpi`` extra), every node
unpacks it into a staging directory, fixes the prefix and renames it into place
(:mod:`ezpz.envs.receive`).
The worker imports nothing of the launch side and no pydantic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.envs.discover import PythonEnv, env_at
from ezpz.envs.pack import TAR_FORMAT, byte_progress, is_inside, tar_env, walk_tree
from ezpz.envs.receive import CHUNK, Receiver, fix_prefix, preflight
from ezpz.errors import EnvToolError, plural
from ezpz.extras import require
from ezpz.log import get_logger

if TYPE_CHECKING:
    # Typing only: the per-node worker must not load pydantic.
    from ezpz.model.spec import Layer

__all__ = ["CHUNK", "NodeResult", "default_dst", "expand_dst", "fix_prefix", "yeet_env", "yeet_worker"]

log = get_logger("ezpz.envs")


@dataclass(frozen=True)
class NodeResult:
    """What one node reports after :func:`yeet_env`'s broadcast.

    Attributes:
        rank: the node's rank (one rank per node).
        host: the node's name (``SLURMD_NODENAME`` or the hostname).
        dst: where the copy was written.
        ok: ``True`` when the copy is complete and in place.
        message: what went wrong, or a short success note.
        seconds: time this node spent receiving and writing.
    """

    rank: int
    host: str
    dst: str
    ok: bool
    message: str
    seconds: float


def default_dst(env: PythonEnv) -> Path:
    """Return ``/tmp/<env-name>``, the node-local default destination."""
    return Path("/tmp") / env.name


def expand_dst(dst: str | Path, rank: int, host: str) -> Path:
    """Fill ``{rank}`` and ``{host}`` in ``dst`` (lets one machine act as many nodes)."""
    return Path(str(dst).replace("{rank}", str(rank)).replace("{host}", host)).absolute()


def _node_name(environ: Mapping[str, str]) -> str:
    return environ.get("SLURMD_NODENAME") or socket.gethostname()


def _check_dst(src: Path, dst: Path) -> None:
    if is_inside(dst, src):
        raise EnvToolError("the destination is inside the source environment", str(dst), f"pick a --dst outside {src}")
    if is_inside(src, dst):
        raise EnvToolError(
            "the source environment is inside the destination", str(src), f"pick a --dst that does not contain {src}"
        )


def _produce(src: Path, compress: bool, write: int) -> None:
    """Write the tar stream of ``src`` (or its tarball) to the pipe ``write``."""
    with os.fdopen(write, "wb") as sink:
        if compress:
            with open(tar_env(src).path, "rb") as tarball:
                shutil.copyfileobj(tarball, sink, CHUNK)
            return
        with tarfile.open(fileobj=sink, mode="w|", format=TAR_FORMAT) as tar:
            for entry in walk_tree(src)[0]:
                tar.add(entry, arcname=str(Path(src.name) / entry.relative_to(src)), recursive=False)


def _source_chunks(src: Path, compress: bool) -> Iterator[bytes]:
    read, write = os.pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _produce(src, compress, write)
        except BaseException as exc:  # reported by the consumer below
            failure.append(exc)
            with contextlib.suppress(OSError):
                os.close(write)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    with os.fdopen(read, "rb") as stream:
        while chunk := stream.read(CHUNK):
            yield chunk
    thread.join()
    if failure:
        raise failure[0]


def _watch_signals(staged: list[Receiver]) -> None:
    """Block SIGINT/SIGTERM here and in later threads; one thread discards ``staged`` on them."""
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)

    def watch() -> None:
        signum = signal.sigwait(stops)
        for receiver in staged:
            receiver.discard()
        os._exit(128 + signum)

    threading.Thread(target=watch, name="ezpz-yeet-signals", daemon=True).start()


def _relay(comm: Any, src: Path, compress: bool, total: int, receiver: Receiver | None) -> str | None:
    """Broadcast the stream of ``src`` from rank 0 and feed it to ``receiver``.

    Returns ``None`` once the whole stream has arrived, or the sender's error.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    source = _source_chunks(src, compress) if rank == 0 else None
    sent, step = 0, max(total // 10, 1)
    while True:
        chunk: bytes | str | None = None
        if source is not None:
            try:
                chunk = next(source, b"")
            except Exception as exc:  # every node must hear of it, or they wait forever
                chunk = f"{type(exc).__name__}: {exc}"
        got: bytes | str = comm.bcast(chunk, root=0)
        if isinstance(got, str):
            return got
        if receiver is not None:
            receiver.feed(got)
        if not got:
            return None
        if rank == 0 and (sent + len(got)) // step > sent // step:
            log.info("yeet-env: sent %d of ~%d MiB to %s", (sent + len(got)) >> 20, total >> 20, plural(size, "node"))
        sent += len(got)


def yeet_worker(src: Path, dst: str, compress: bool, min_nodes: int, report: Path | None) -> int:
    """Run on one rank per node: rank 0 broadcasts ``src``, every node writes its copy.

    The stream is an MPI broadcast (a tree inside the MPI library, so the cost
    grows with log(nodes)).  A node that fails keeps receiving so the others
    finish; rank 0 gathers every node's :class:`NodeResult`, logs them, writes
    ``report`` (JSON) when given and returns 0 when at least ``min_nodes``
    nodes (all of them when ``min_nodes`` is 0) succeeded.  Other ranks return 0.
    """
    # A rank blocked inside an MPI call never runs Python signal handlers, so
    # SIGINT/SIGTERM (the executor stopping the launch) are blocked in every
    # thread, MPI's included, and taken by one watcher thread that removes the
    # staging directory and exits.
    staged: list[Receiver] = []
    _watch_signals(staged)
    mpi = require("mpi4py.MPI", "mpi")
    comm = mpi.COMM_WORLD
    mine = _copy_here(comm, src, dst, compress, staged)
    gathered = comm.gather(dataclasses.asdict(mine), root=0)
    if comm.Get_rank() != 0:
        return 0
    assert gathered is not None
    return _summarise([NodeResult(**r) for r in gathered], min_nodes or comm.Get_size(), report)


def _copy_here(comm: Any, src: Path, dst: str, compress: bool, staged: list[Receiver]) -> NodeResult:
    """Take part in the broadcast of ``src`` (rank 0 sends) and write this node's copy; how it went."""
    rank = comm.Get_rank()
    start = time.monotonic()
    header: tuple[str, int] | None = None
    if rank == 0:
        env = env_at(src)
        header = (str(env.path), tar_env(env.path).size if compress else walk_tree(env.path)[1])
    source_path, total = comm.bcast(header, root=0)
    host = _node_name(os.environ)
    target = expand_dst(dst, rank, host)
    problem = preflight(target, int(total * (3 if compress else 1.05)))
    receiver: Receiver | None = None
    if problem is None:
        try:
            receiver = Receiver(target, Path(source_path).name, source_path)
            staged.append(receiver)
        except OSError as exc:
            problem = f"cannot create the staging directory: {exc}"
    try:
        abort = _relay(comm, Path(source_path), compress, total, receiver)
    except BaseException:
        if receiver is not None:
            receiver.discard()
        raise
    if receiver is not None:
        problem = receiver.finish(abort)
    elif abort is not None:
        problem = f"the source could not be sent: {abort}"
    return NodeResult(rank, host, str(target), problem is None, problem or "copied", round(time.monotonic() - start, 3))


def _summarise(results: list[NodeResult], min_nodes: int, report: Path | None) -> int:
    """Rank 0: log every node's result, write ``report``; 0 when at least ``min_nodes`` nodes have the copy."""
    good = sum(r.ok for r in results)
    for r in results:
        (log.info if r.ok else log.error)(
            "node %s (rank %d): %s -> %s (%.2fs)", r.host, r.rank, r.message, r.dst, r.seconds
        )
    if report is not None:
        report.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    nodes = plural(len(results), "node")
    log.info("yeet-env: %d of %s %s the environment", good, nodes, "has" if good == 1 else "have")
    return 0 if good >= min_nodes else 1


def yeet_env(
    src: Path,
    dst: str | Path | None = None,
    *,
    compress: bool = False,
    min_nodes: int | None = None,
    layers: Sequence[Layer] = (),
    report: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, Path]:
    """Copy the environment at ``src`` to ``dst`` on every node of the allocation.

    Renders a one-rank-per-node launch of :func:`yeet_worker` with the
    allocation's own launcher (``mpiexec``/``srun``) and runs it through
    :mod:`ezpz.launch.execute`.

    Args:
        src: the environment prefix.
        dst: node-local destination (default ``/tmp/<env-name>``); ``{rank}``
            and ``{host}`` are replaced on each node.
        compress: ship a gzip tarball (made by :func:`tar_env`, or reused)
            instead of an uncompressed tar stream.
        min_nodes: succeed when at least this many nodes got the copy
            (default: all of them).
        layers: extra launch layers (hostfile, nhosts, launcher, launcher_flags ...).
        report: write the per-node results here as JSON.
        environ: environment of the launch (default ``os.environ``).

    Returns the launcher's exit code and the destination (as given, unexpanded).

    Raises:
        EnvToolError: ``src`` is missing, ``dst`` overlaps it, or ``min_nodes``
            exceeds the allocation.
    """
    # The launch side loads only in the process that starts the broadcast, not in every node's worker.
    from ezpz.launch.execute import execute
    from ezpz.launch.resolve import plan_launch

    env = env_at(src)
    target = Path(dst) if dst is not None else default_dst(env)
    _check_dst(env.path, expand_dst(target, 0, _node_name(os.environ if environ is None else environ)))
    if compress:
        with byte_progress(f"packing {env.name}") as progress:
            tar_env(env.path, progress=progress)
    worker = _worker_command(env.path, target, compress, min_nodes, report)
    flags: dict[str, object] = {"ppn": 1, "rank_env": False, "oversubscribe": True}
    plan = plan_launch([*layers, ("yeet-env", {**flags, "command": worker})], environ)
    _check_min_nodes(min_nodes, plan.nhosts)
    log.info("yeet-env: %s -> %s on %s", env.path, target, plural(plan.nhosts, "node"))
    return execute(plan, environ), target


def _worker_command(src: Path, dst: Path, compress: bool, min_nodes: int | None, report: Path | None) -> list[str]:
    """The argv of one node's worker (``python -m ezpz.envs``)."""
    worker = [sys.executable, "-m", "ezpz.envs", "--src", str(src), "--dst", str(dst)]
    worker += ["--compress"] if compress else []
    worker += ["--min-nodes", str(min_nodes)] if min_nodes is not None else []
    worker += ["--report", str(report)] if report is not None else []
    return worker


def _check_min_nodes(min_nodes: int | None, nhosts: int) -> None:
    """Raise unless ``min_nodes`` is unset or between 1 and the ``nhosts`` of the allocation."""
    if min_nodes is not None and not 1 <= min_nodes <= nhosts:
        raise EnvToolError(
            "--min-nodes must be between 1 and the number of nodes",
            min_nodes,
            f"this allocation has {plural(nhosts, 'node')}",
        )
