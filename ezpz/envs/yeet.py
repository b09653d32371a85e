"""Environment tools: find the active Python environment, pack it, ship it.

* :func:`active_env` infers the environment this process runs in (venv, uv
  venv or conda prefix) from the environment variables and ``sys.prefix``.
* :func:`tar_env` packs an environment into ``<name>.tar.gz`` in-process
  (stdlib :mod:`tarfile`, no shell), writing to a temporary name and renaming,
  so a failed or interrupted run leaves neither a partial tarball nor a temp
  file behind.

Everything here is standard library plus ``rich`` (only for the progress bar);
nothing imports torch, mpi4py or wandb.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ezpz.errors import EnvToolError, plural
from ezpz.extras import require
from ezpz.log import get_logger

if TYPE_CHECKING:
    # Typing only: the per-node worker must not load pydantic.
    from ezpz.model.spec import Layer

__all__ = [
    "NodeResult",
    "Progress",
    "PythonEnv",
    "Tarball",
    "activate_line",
    "active_env",
    "byte_progress",
    "default_dst",
    "env_at",
    "expand_dst",
    "fix_prefix",
    "tar_env",
    "yeet_env",
    "yeet_worker",
]

log = get_logger("ezpz.envs")

#: ``progress(done_bytes, total_bytes)``: called as work advances.
Progress = Callable[[int, int], None]

EnvKind = Literal["venv", "uv", "conda"]

#: GNU tar format: long names without a PAX header per member (faster to
#: write and read than PAX, which tarfile emits for every entry).
_FORMAT = tarfile.GNU_FORMAT

#: Directory names so generic that the parent's name is prefixed to them.
_GENERIC_NAMES = {"venv", ".venv", "env", ".env", "virtualenv"}


@dataclass(frozen=True)
class PythonEnv:
    """A Python environment on disk.

    Attributes:
        path: the environment's prefix (the directory holding ``bin/``).
        kind: ``"venv"``, ``"uv"`` (a venv created by uv) or ``"conda"``.
        name: a short, file-name-safe name: the directory name, prefixed with
            its parent's name when the directory is called ``.venv``/``venv``.

    """

    path: Path
    kind: EnvKind
    name: str


def _env_name(path: Path) -> str:
    if path.name in _GENERIC_NAMES and path.parent.name:
        return f"{path.parent.name}-{path.name.lstrip('.')}"
    return path.name.lstrip(".") or "env"


def env_at(path: Path) -> PythonEnv:
    """Describe the environment rooted at ``path`` (kind inferred from its files).

    Raises:
        EnvToolError: ``path`` is not a directory.

    """
    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise EnvToolError(
            "environment source is not a directory",
            str(path),
            "pass --src with the prefix of a venv or conda environment",
        )
    kind: EnvKind = "venv"
    cfg = path / "pyvenv.cfg"
    if (path / "conda-meta").is_dir():
        kind = "conda"
    elif cfg.is_file() and any(
        line.split("=")[0].strip() == "uv" for line in cfg.read_text(errors="replace").splitlines()
    ):
        kind = "uv"
    return PythonEnv(path=path, kind=kind, name=_env_name(path))


def active_env(environ: Mapping[str, str] | None = None, prefix: str | None = None) -> PythonEnv:
    """Return the Python environment this process runs in.

    ``VIRTUAL_ENV`` (set by ``activate`` and by ``uv run``) wins, then
    ``CONDA_PREFIX``, then ``sys.prefix`` when it differs from
    ``sys.base_prefix`` (a venv's python run without activating it).

    Args:
        environ: environment variables (default ``os.environ``).
        prefix: the interpreter prefix (default ``sys.prefix``); used only when
            no variable names an environment.

    Raises:
        EnvToolError: no environment is active.

    """
    env = os.environ if environ is None else environ
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(var, "").strip()
        if value:
            return env_at(Path(value))
    prefix = sys.prefix if prefix is None else prefix
    if prefix != sys.base_prefix:
        return env_at(Path(prefix))
    raise EnvToolError(
        "no active Python environment",
        "VIRTUAL_ENV and CONDA_PREFIX unset",
        "activate a venv or conda environment, or pass --src",
    )


@dataclass(frozen=True)
class Tarball:
    """The result of :func:`tar_env`.

    Attributes:
        path: the tarball.
        reused: ``True`` when an existing tarball was kept (no ``overwrite``).
        files: number of archive members written (0 when reused).
        size: size of the tarball in bytes.

    """

    path: Path
    reused: bool
    files: int
    size: int


def _walk(src: Path) -> tuple[list[Path], int]:
    """List every entry under ``src`` (parents before children) and the file bytes.

    Symlinks to directories are listed but not followed.
    """
    entries: list[Path] = [src]
    total = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        base = Path(root)
        for name in dirs + sorted(files):
            entry = base / name
            entries.append(entry)
            if entry.is_file() and not entry.is_symlink():
                total += entry.lstat().st_size
    return entries, total


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _check_out(src: Path, out: Path) -> None:
    if _inside(out, src):
        raise EnvToolError(
            "the tarball would be written inside the environment it packs",
            str(out),
            f"pass --out outside {src}",
        )
    if not out.parent.is_dir():
        raise EnvToolError(
            "the tarball's directory does not exist",
            str(out.parent),
            "create it or pass another --out",
        )
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise EnvToolError(
            "the tarball's directory is not writable",
            str(out.parent),
            "pass --out in a writable directory",
        )


def tar_env(
    src: Path,
    out: Path | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    level: int = 1,
) -> Tarball:
    """Pack the environment at ``src`` into a gzip tarball.

    Members are stored under ``<src.name>/``; symlinks stay symlinks.  The
    archive is written to a hidden temporary file next to ``out`` and renamed
    into place only when complete; on any failure, ``KeyboardInterrupt``
    included, the temporary file is removed and ``out`` is left as it was.

    Args:
        src: the environment prefix to pack.
        out: the tarball (default ``<src.parent>/<name>.tar.gz``).
        overwrite: repack even when ``out`` exists (otherwise it is reused).
        progress: called with ``(done_bytes, total_bytes)`` as files are added.
        level: gzip compression level, 1 (fast, the default: environments are
            mostly compiled code that compresses little more at 9) to 9 (small).

    Raises:
        EnvToolError: ``src`` is not a directory, ``out`` is inside ``src`` or
            not writable, a file of ``src`` cannot be read, or writing fails
            (for example, no space left).

    """
    env = env_at(src)
    out = Path(out).expanduser().absolute() if out else env.path.parent / f"{env.name}.tar.gz"
    if out.exists() and not overwrite:
        log.info("reusing %s (pass --overwrite to repack)", out)
        return Tarball(path=out, reused=True, files=0, size=out.stat().st_size)
    _check_out(env.path, out)
    entries, total = _walk(env.path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    done = 0
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:gz", compresslevel=level, format=_FORMAT) as tar,
        ):
            for entry in entries:
                arcname = str(Path(env.path.name) / entry.relative_to(env.path))
                try:
                    tar.add(entry, arcname=arcname, recursive=False)
                except OSError as exc:
                    if exc.filename is not None and _inside(Path(exc.filename), env.path):
                        raise EnvToolError(
                            f"cannot read a file of the environment: {exc.strerror}",
                            str(exc.filename),
                            "fix its permissions or pass another --src",
                        ) from exc
                    raise
                if progress is not None and entry.is_file() and not entry.is_symlink():
                    done += entry.stat().st_size
                    progress(done, total)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        hint = (
            "free space there or pass --out elsewhere"
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            else "pass --out elsewhere"
        )
        raise EnvToolError(f"cannot write the tarball: {exc.strerror or exc}", str(out), hint) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("packed %s (%d entries) into %s", env.path, len(entries), out)
    return Tarball(path=out, reused=False, files=len(entries), size=out.stat().st_size)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def byte_progress(label: str, enabled: bool | None = None) -> Iterator[Progress | None]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar on stderr.

    Args:
        label: the bar's description.
        enabled: draw the bar; default: only when stderr is a terminal.

    Yields:
        the callback, or ``None`` when the bar is disabled.

    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield None
        return
    # rich loads only when a progress bar is shown.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# ------------------------------------------------------------------ yeet-env

#: Bytes per broadcast message.
CHUNK = 8 << 20
#: Files whose every mention of the old prefix is rewritten in the copy.
_ACTIVATE = ("activate", "activate.csh", "activate.fish", "activate.nu", "activate.ps1", "activate.bat")


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
    if _inside(dst, src):
        raise EnvToolError("the destination is inside the source environment", str(dst), f"pick a --dst outside {src}")
    if _inside(src, dst):
        raise EnvToolError(
            "the source environment is inside the destination", str(src), f"pick a --dst that does not contain {src}"
        )


def _existing_parent(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path("/")


def _preflight(dst: Path, need: int) -> str | None:
    """Return why ``dst`` cannot take ``need`` bytes here, or ``None`` when it can."""
    base = _existing_parent(dst.parent)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not writable"
    free = shutil.disk_usage(base).free
    if free < need:
        return f"not enough space in {base}: need {need >> 20} MiB, {free >> 20} MiB free"
    return None


def fix_prefix(root: Path, old: str, new: str) -> int:
    """Point a copied environment at its new path; return the files changed.

    Rewrites every mention of ``old`` in ``bin/activate*`` and ``pyvenv.cfg``,
    and the ``#!`` line of scripts in ``bin/`` (console scripts such as
    ``pip`` would otherwise run the interpreter of the original environment).
    """
    changed = 0
    targets = [root / "pyvenv.cfg", *(p for p in (root / "bin").glob("*") if p.is_file())]
    for path in targets:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if path.name in _ACTIVATE or path.name == "pyvenv.cfg":
            fixed = data.replace(old.encode(), new.encode())
        elif data.startswith(b"#!"):
            line, sep, rest = data.partition(b"\n")
            fixed = line.replace(old.encode(), new.encode()) + sep + rest
        else:
            continue
        if fixed != data:
            path.write_bytes(fixed)
            changed += 1
    return changed


def _install(staged: Path, dst: Path) -> None:
    """Move the complete copy ``staged`` to ``dst``, replacing any old copy."""
    old = dst.parent / f".{dst.name}.yeet-old-{os.getpid()}"
    had = dst.exists() or dst.is_symlink()
    if had:
        os.rename(dst, old)
    try:
        os.rename(staged, dst)
    except BaseException:
        if had:
            os.rename(old, dst)
        raise
    if had:
        shutil.rmtree(old, ignore_errors=True)


class _Receiver:
    """Extracts a tar stream fed chunk by chunk into ``<dst>`` via a staging directory."""

    def __init__(self, dst: Path, name: str, old_prefix: str) -> None:
        self.dst = dst
        self.stage = dst.parent / f".{dst.name}.yeet-{os.getpid()}.tmp"
        self.name = name
        self.old_prefix = old_prefix
        self.error: str | None = None
        self._lock = threading.Lock()
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(target=self._extract, daemon=True)
        self.stage.mkdir(parents=True)
        self._thread.start()

    def _extract(self) -> None:
        try:
            with os.fdopen(self._read, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
                if hasattr(tarfile, "fully_trusted_filter"):
                    # The stream is this job's rank 0 packing the user's own
                    # environment, and its absolute symlinks (bin/python ->
                    # the base interpreter) must survive; the safer filters
                    # refuse those and cost a realpath() per member (≈5x slower).
                    tar.extraction_filter = tarfile.fully_trusted_filter
                for member in tar:
                    tar.extract(member, self.stage)
                while stream.read(CHUNK):  # the archive's zero padding
                    pass
        except (OSError, tarfile.TarError) as exc:
            self.error = f"cannot write the copy: {exc}"

    def feed(self, chunk: bytes) -> None:
        """Pass one chunk to the extractor (dropped once it has failed)."""
        if self.error is None:
            try:
                _write_all(self._write, chunk)
            except OSError as exc:
                self.error = self.error or f"cannot write the copy: {exc}"

    def discard(self) -> None:
        """Stop extracting and remove the staging directory (the copy is abandoned).

        Waits for an install in progress, so ``dst`` is never left half-swapped.
        """
        with self._lock:
            self._close_write()
            self._thread.join(10)
            shutil.rmtree(self.stage, ignore_errors=True)

    def finish(self, abort: str | None = None) -> str | None:
        """Close the stream and install the copy; return an error or ``None``.

        Args:
            abort: the sender failed with this message: discard the copy.
        """
        if abort is not None:
            self.error = f"the source could not be sent: {abort}"
        self._close_write()
        self._thread.join()
        with self._lock:
            return self._settle()

    def _close_write(self) -> None:
        if self._write >= 0:
            with contextlib.suppress(OSError):
                os.close(self._write)
            self._write = -1

    def _settle(self) -> str | None:
        try:
            if self.error is None:
                copy = self.stage / self.name
                fix_prefix(copy, self.old_prefix, str(self.dst))
                _install(copy, self.dst)
        except OSError as exc:
            self.error = f"cannot install the copy: {exc}"
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        return self.error


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _produce(src: Path, compress: bool, write: int) -> None:
    """Write the tar stream of ``src`` (or its tarball) to the pipe ``write``."""
    with os.fdopen(write, "wb") as sink:
        if compress:
            with open(tar_env(src).path, "rb") as tarball:
                shutil.copyfileobj(tarball, sink, CHUNK)
            return
        with tarfile.open(fileobj=sink, mode="w|", format=_FORMAT) as tar:
            for entry in _walk(src)[0]:
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


def _watch_signals(staged: list[_Receiver]) -> None:
    """Block SIGINT/SIGTERM here and in later threads; one thread discards ``staged`` on them."""
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)

    def watch() -> None:
        signum = signal.sigwait(stops)
        for receiver in staged:
            receiver.discard()
        os._exit(128 + signum)

    threading.Thread(target=watch, name="ezpz-yeet-signals", daemon=True).start()


def _relay(comm: Any, src: Path, compress: bool, total: int, receiver: _Receiver | None) -> str | None:
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
    staged: list[_Receiver] = []
    _watch_signals(staged)
    mpi = require("mpi4py.MPI", "mpi")
    comm = mpi.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    start = time.monotonic()
    header: tuple[str, int] | None = None
    if rank == 0:
        env = env_at(src)
        header = (str(env.path), tar_env(env.path).size if compress else _walk(env.path)[1])
    source_path, total = comm.bcast(header, root=0)
    host = _node_name(os.environ)
    target = expand_dst(dst, rank, host)
    problem = _preflight(target, int(total * (3 if compress else 1.05)))
    receiver: _Receiver | None = None
    if problem is None:
        try:
            receiver = _Receiver(target, Path(source_path).name, source_path)
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
    mine = NodeResult(rank, host, str(target), problem is None, problem or "copied", round(time.monotonic() - start, 3))
    gathered = comm.gather(dataclasses.asdict(mine), root=0)
    if rank != 0:
        return 0
    assert gathered is not None
    results = [NodeResult(**r) for r in gathered]
    good = sum(r.ok for r in results)
    min_nodes = min_nodes or size
    for r in results:
        (log.info if r.ok else log.error)(
            "node %s (rank %d): %s -> %s (%.2fs)", r.host, r.rank, r.message, r.dst, r.seconds
        )
    if report is not None:
        report.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    log.info("yeet-env: %d of %s %s the environment", good, plural(size, "node"), "has" if good == 1 else "have")
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

    Returns:
        The launcher's exit code and the destination (as given, unexpanded).

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
    worker = [sys.executable, "-m", "ezpz.envs", "--src", str(env.path), "--dst", str(target)]
    worker += ["--compress"] if compress else []
    worker += ["--min-nodes", str(min_nodes)] if min_nodes is not None else []
    worker += ["--report", str(report)] if report is not None else []
    flags: dict[str, object] = {"ppn": 1, "rank_env": False, "oversubscribe": True}
    plan = plan_launch([*layers, ("yeet-env", {**flags, "command": worker})], environ)
    if min_nodes is not None and not 1 <= min_nodes <= plan.nhosts:
        raise EnvToolError(
            "--min-nodes must be between 1 and the number of nodes",
            min_nodes,
            f"this allocation has {plural(plan.nhosts, 'node')}",
        )
    log.info("yeet-env: %s -> %s on %s", env.path, target, plural(plan.nhosts, "node"))
    return execute(plan, environ), target


def activate_line(env: PythonEnv, dst: Path) -> str:
    """Return the shell line that activates the copy at ``dst``."""
    if env.kind == "conda":
        return f"conda activate {shlex.quote(str(dst))}"
    return f"source {shlex.quote(str(dst / 'bin' / 'activate'))}"


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ezpz.envs", description="yeet-env worker (one rank per node)")
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--compress", action="store_true")
    parser.add_argument("--min-nodes", type=int, default=0)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    return yeet_worker(args.src, args.dst, args.compress, args.min_nodes, args.report)
