"""One node's side of ``ezpz yeet-env``: unpack the stream, fix the prefix, rename into place.

:class:`Receiver` extracts the tar stream :func:`ezpz.envs.yeet.yeet_worker`
feeds it into a staging directory beside the destination; only a complete
copy, its prefix fixed (:func:`fix_prefix`), replaces the old one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import threading
from pathlib import Path

__all__ = ["CHUNK", "Receiver", "fix_prefix", "preflight"]

#: Bytes per broadcast message.
CHUNK = 8 << 20
#: Files whose every mention of the old prefix is rewritten in the copy.
_ACTIVATE = ("activate", "activate.csh", "activate.fish", "activate.nu", "activate.ps1", "activate.bat")


def _existing_parent(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists."""
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path("/")


def preflight(dst: Path, need: int) -> str | None:
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


class Receiver:
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
        """The extractor thread: unpack the stream into the staging directory."""
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
        """Close the writing end of the stream (once)."""
        if self._write >= 0:
            with contextlib.suppress(OSError):
                os.close(self._write)
            self._write = -1

    def _settle(self) -> str | None:
        """Fix the prefix and install a complete copy; remove the staging directory either way."""
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
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
