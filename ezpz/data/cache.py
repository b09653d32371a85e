"""Prepare-once caching safe for many ranks on a shared file system.

:func:`prepare_once` builds a cache entry exactly once: when
``torch.distributed`` is initialised, rank 0 builds while the other ranks
wait at a barrier, then everyone reads the finished entry; in every case a
file lock serialises builders (several jobs, or node-local caches), and the
entry is written to a temporary directory and renamed into place, so a
reader never sees half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ezpz.extras import require
from ezpz.runtime.dist import barrier

__all__ = ["default_cache_dir", "fingerprint", "main_first", "prepare_once"]


def default_cache_dir() -> Path:
    """Return ``$EZPZ_CACHE_DIR`` or ``$XDG_CACHE_HOME/ezpz`` (``~/.cache/ezpz``), plus ``data``."""
    root = os.environ.get("EZPZ_CACHE_DIR")
    if root:
        return Path(root) / "data"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ezpz" / "data"


def fingerprint(parts: Any) -> str:
    """Return a short stable hash of JSON-serialisable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _dist_rank_world() -> tuple[int, int] | None:
    # torch.distributed can only be initialised if the program imported it;
    # looking in sys.modules keeps torch off the import path of callers.
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist.get_rank(), dist.get_world_size()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (no-op without a process group)."""
    ranks = _dist_rank_world()
    if ranks is None or ranks[1] == 1:
        yield
        return
    if ranks[0] != 0:
        barrier()
    try:
        yield
    finally:
        if ranks[0] == 0:
            barrier()


def prepare_once(entry: Path, build: Callable[[Path], None]) -> Path:
    """Return ``entry``, building it first with ``build(tmp_dir)`` if it does not exist.

    ``build`` writes the entry's contents into the empty directory it is given;
    that directory is renamed to ``entry`` only when ``build`` returns.
    """
    FileLock = require("filelock", "data").FileLock

    entry.parent.mkdir(parents=True, exist_ok=True)
    with main_first(), FileLock(str(entry) + ".lock"):
        if not entry.exists():
            tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", suffix=".tmp", dir=entry.parent))
            try:
                build(tmp)
                os.replace(tmp, entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return entry
