"""``ezpz tar-env``: pack an environment into ``<name>.tar.gz`` in-process, and the byte progress bar.

:func:`tar_env` uses the standard library's :mod:`tarfile` (no shell), writing
to a temporary name and renaming, so a failed or interrupted run leaves neither
a partial tarball nor a temp file behind.  ``rich`` loads only for the bar.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ezpz.envs.discover import env_at
from ezpz.errors import EnvToolError
from ezpz.log import get_logger

__all__ = ["TAR_FORMAT", "Progress", "Tarball", "byte_progress", "is_inside", "tar_env", "walk_tree"]

log = get_logger("ezpz.envs")

#: ``progress(done_bytes, total_bytes)``: called as work advances.
Progress = Callable[[int, int], None]

#: GNU tar format: long names without a PAX header per member (faster to
#: write and read than PAX, which tarfile emits for every entry).
TAR_FORMAT = tarfile.GNU_FORMAT


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


def walk_tree(src: Path) -> tuple[list[Path], int]:
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


def is_inside(path: Path, parent: Path) -> bool:
    """Whether ``path`` is ``parent`` or lies below it."""
    return path == parent or parent in path.parents


def _check_out(src: Path, out: Path) -> None:
    if is_inside(out, src):
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
    entries, total = walk_tree(env.path)
    fd, tmp, held = _hidden_temp(out)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        _write_tar(fd, env.path, entries, level, progress, total)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, out) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("packed %s (%d entries) into %s", env.path, len(entries), out)
    return Tarball(path=out, reused=False, files=len(entries), size=out.stat().st_size)


def _hidden_temp(out: Path) -> tuple[int, Path, set[int | signal.Signals]]:
    """Create a hidden temporary file beside ``out``; return it and the signal mask to restore.

    Ctrl-C / SIGTERM between creating the file and the caller's ``try`` (which
    removes it on failure) would leave it behind: they stay held until the
    caller restores the returned mask inside that ``try``.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    return fd, Path(tmp_name), held


def _write_error(exc: OSError, out: Path) -> EnvToolError:
    """The one-line error for a tarball that could not be written (a full disk says so)."""
    hint = (
        "free space there or pass --out elsewhere"
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        else "pass --out elsewhere"
    )
    return EnvToolError(f"cannot write the tarball: {exc.strerror or exc}", str(out), hint)


def _write_tar(fd: int, root: Path, entries: list[Path], level: int, progress: Progress | None, total: int) -> None:
    """Write ``entries`` of the environment at ``root`` as a gzip tarball to ``fd`` (closed after)."""
    done = 0
    with (
        os.fdopen(fd, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w:gz", compresslevel=level, format=TAR_FORMAT) as tar,
    ):
        for entry in entries:
            try:
                tar.add(entry, arcname=str(Path(root.name) / entry.relative_to(root)), recursive=False)
            except OSError as exc:
                if exc.filename is not None and is_inside(Path(exc.filename), root):
                    raise EnvToolError(
                        f"cannot read a file of the environment: {exc.strerror}",
                        str(exc.filename),
                        "fix its permissions or pass another --src",
                    ) from exc
                raise
            if progress is not None and entry.is_file() and not entry.is_symlink():
                done += entry.stat().st_size
                progress(done, total)


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
