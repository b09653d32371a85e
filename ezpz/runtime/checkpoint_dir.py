"""The checkpoint directory on disk: names, completeness, the info file, pruning.

Filesystem only (no torch, no collective): :mod:`ezpz.runtime.checkpoint`
calls these on the rank that should, and :func:`checkpoints` and
:func:`latest` are its public listing functions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ezpz.errors import CheckpointError
from ezpz.log import get_logger

__all__ = [
    "DCP_METADATA",
    "INFO_FILE",
    "TMP",
    "checkpoints",
    "error_line",
    "fsync_dir",
    "is_complete",
    "latest",
    "prepare",
    "probe",
    "prune",
    "read_info",
    "step_name",
]

log = get_logger(__name__)

#: File rank 0 writes into every checkpoint: step, world size, extra, format.
INFO_FILE = "ezpz.json"
#: The file DCP's coordinator writes last; a checkpoint without it is incomplete.
DCP_METADATA = ".metadata"
#: Suffix of a checkpoint directory still being written (or cut off).
TMP = ".tmp"
_NAME = re.compile(r"step-(\d+)")


def step_name(step: int) -> str:
    """The directory name of the checkpoint of ``step``: ``step-00000100``."""
    return f"step-{step:08d}"


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds both the info file and DCP's metadata (written last)."""
    return (path / INFO_FILE).is_file() and (path / DCP_METADATA).is_file()


def checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the complete checkpoints in ``directory``, oldest step first.

    ``.tmp`` directories (saves in progress or cut off) are never listed.  A
    missing directory has none.  Filesystem only: no torch, no collective.
    """
    root = Path(directory)
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise CheckpointError("cannot read the checkpoint directory", str(root), exc.strerror or str(exc)) from None
    found = []
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match and is_complete(entry):
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def latest(directory: str | os.PathLike[str]) -> Path | None:
    """Return the newest complete checkpoint in ``directory``, or ``None``."""
    found = checkpoints(directory)
    return found[-1] if found else None


def error_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``; for DCP's CheckpointException, of the first failing rank's cause."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        rank, (cause, _) = min(failures.items(), key=lambda item: item[0])
        return f"rank {rank}: {error_line(cause)}"
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


def prepare(root: Path, tmp: Path, info: dict[str, Any]) -> str | None:
    """Rank 0: make ``root``, a fresh ``tmp`` and its info file; the error line, or None."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # left by a save that was cut off
        tmp.mkdir()
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    except OSError as exc:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or root}"
    return None


def probe(tmp: Path) -> str | None:
    """Every rank: the reason this rank cannot create files in ``tmp``, or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=tmp, prefix=".probe-"):
            pass
    except OSError as exc:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or tmp}"
    return None


def prune(root: Path, keep: int | None, newest: Path) -> None:
    """Rank 0, after a commit: drop complete checkpoints beyond ``keep`` and older cut-off saves."""
    complete = checkpoints(root)
    doomed = complete[:-keep] if keep is not None else []
    newest_step = int(newest.name.removeprefix("step-"))
    for entry in root.iterdir():
        match = _NAME.fullmatch(entry.name.removesuffix(TMP))
        if entry.name.endswith(TMP) and match and int(match.group(1)) < newest_step:
            doomed.append(entry)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
        log.debug("checkpoint: removed %s", path)


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s entries (a rename into it) to disk, where the filesystem allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_info(path: Path) -> dict[str, Any]:
    """The info file of the complete checkpoint at ``path``; raise when it is not one."""
    if not path.is_dir():
        raise CheckpointError(
            "no such checkpoint", str(path), "give a step-NNNNNNNN directory, or use load_latest(DIR)"
        )
    if not is_complete(path):
        raise CheckpointError(
            "not a complete checkpoint", str(path), f"it lacks {INFO_FILE} or {DCP_METADATA}; use load_latest(DIR)"
        )
    try:
        info = json.loads((path / INFO_FILE).read_text())
        int(info["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("unreadable checkpoint info", str(path / INFO_FILE), error_line(exc)) from None
    return info
