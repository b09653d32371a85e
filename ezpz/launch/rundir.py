"""The run directory of one ``ezpz launch`` and the records in it.

``make_run_dir`` creates it; :class:`RankLogs` appends each rank's lines to
``rank-N.log`` (and the launcher's own to ``launcher.log``);
:func:`write_json` writes ``plan.json`` and ``result.json``, which
:func:`read_result` and :func:`first_failure` read back for other tools (node
failover).  :class:`RankEnd` and :class:`Failure` are how a rank ended, as the
reader saw it and as ``result.json`` records it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ezpz.errors import LaunchError

__all__ = [
    "Failure",
    "RankEnd",
    "RankLogs",
    "first_failure",
    "make_run_dir",
    "read_result",
    "recorded_error",
    "status_text",
    "strip_ansi",
    "write_json",
]

#: Rank log files kept open at once (a 10,000-rank run stays under fd limits).
OPEN_LOGS = 256

_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: bytes) -> bytes:
    """``text`` without ANSI colour and cursor codes."""
    return _ANSI.sub(b"", text) if b"\x1b" in text else text


def status_text(status: int) -> str:
    """Describe a shell-style exit status: ``exit 1`` or ``SIGKILL (exit 137)``."""
    if status > 128:
        try:
            return f"{signal.Signals(status - 128).name} (exit {status})"
        except ValueError:
            pass
    return f"exit {status}"


@dataclass(frozen=True)
class RankEnd:
    """How one rank ended, from its shim's record.

    Attributes:
        rank: global rank.
        local_rank: rank on its host (``None`` when no start record came).
        host: host it ran on.
        status: exit status as a shell reports it (``128 + n`` for signal n).
        seconds: seconds after the launch started that the end was seen.
    """

    rank: int
    local_rank: int | None
    host: str
    status: int
    seconds: float

    @property
    def signal(self) -> int | None:
        """The signal that ended the rank, if ``status`` says one did."""
        return self.status - 128 if self.status > 128 else None

    @property
    def code(self) -> int | None:
        """The rank's exit code, when it exited rather than died from a signal."""
        return None if self.status > 128 else self.status


@dataclass(frozen=True)
class Failure:
    """The first failing rank of a run, as ``result.json`` records it (see :func:`first_failure`)."""

    rank: int
    local_rank: int | None
    host: str
    code: int | None
    signal: int | None
    seconds: float


class RankLogs:
    """Per-rank log files in the run directory; stops (and says so once) when writing fails.

    A retry (``attempt`` > 0) appends to the same files, each starting its
    part with one ``==> ezpz: attempt N <==`` line.
    """

    def __init__(self, run_dir: Path | None, warn: Callable[[str], None], attempt: int = 0) -> None:
        self.dir = run_dir
        self.warn = warn
        self.attempt = attempt
        self.open: collections.OrderedDict[str, IO[bytes]] = collections.OrderedDict()
        self.touched: set[str] = set()
        self.begun: set[str] = set()
        self.stopped = run_dir is None

    def write(self, name: str, lines: list[bytes]) -> None:
        """Append ``lines`` (without newlines) to log ``name``, ANSI codes stripped."""
        if self.stopped:
            return
        assert self.dir is not None
        blob = strip_ansi(b"\n".join(lines) + b"\n")
        try:
            handle = self.open.get(name)
            if handle is None:
                if len(self.open) >= OPEN_LOGS:
                    self.open.popitem(last=False)[1].close()
                handle = self.open[name] = open(self.dir / name, "ab")  # noqa: SIM115 - kept open across reads
                if self.attempt and name not in self.begun:
                    handle.write(f"==> ezpz: attempt {self.attempt + 1} <==\n".encode())
                self.begun.add(name)
            else:
                self.open.move_to_end(name)
            handle.write(blob)
            self.touched.add(name)
        except OSError as exc:
            self._stop(exc)

    def flush(self) -> None:
        """Flush the logs written since the last flush."""
        if self.stopped:
            return
        try:
            for name in self.touched:
                if name in self.open:
                    self.open[name].flush()
        except OSError as exc:
            self._stop(exc)
        self.touched.clear()

    def close(self) -> None:
        """Flush and close every open log."""
        self.flush()
        for handle in self.open.values():
            try:
                handle.close()
            except OSError as exc:
                self._stop(exc)
        self.open.clear()

    def _stop(self, exc: OSError) -> None:
        if self.stopped:
            return
        self.stopped = True
        for handle in self.open.values():
            with contextlib.suppress(OSError):
                handle.close()
        self.open.clear()
        self.warn(
            f"logging to {self.dir} stopped ({exc.strerror or exc}); the run goes on and the console still shows it"
        )


def recorded_error(run_dir: Path, rank: int) -> str | None:
    """The message torch's ``@record`` wrote for ``rank`` (``rank-N.error.json``), if any."""
    try:
        data = json.loads((run_dir / f"rank-{rank}.error.json").read_text())
        return str(data["message"]["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_run_dir(given: str | Path | None, launch_id: str) -> Path:
    """Create this launch's run directory and return it.

    ``given`` (``--run-dir`` / ``EZPZ_RUN_DIR``) is used as it is; the default
    is ``./ezpz-runs/<YYYYmmdd-HHMMSS>-<launch id>``.  A directory that cannot
    be created or written raises :class:`~ezpz.errors.LaunchError`.
    """
    if given is not None:
        path = Path(given)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("ezpz-runs") / f"{stamp}-{launch_id}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path("ezpz-runs") / f"{stamp}-{launch_id}-{suffix}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ezpz-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LaunchError(
            f"run directory is not writable ({exc.strerror or exc})",
            str(path),
            "pass --run-dir DIR (or set EZPZ_RUN_DIR) to a folder you can write",
        ) from None
    return path


def write_json(path: Path, data: dict[str, Any]) -> bool:
    """Write ``data`` to ``path`` atomically; return whether it worked."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
    except OSError:
        return False
    return True


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """Read a run directory's ``result.json``; raise :class:`~ezpz.errors.LaunchError` if it is missing."""
    path = Path(run_dir) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LaunchError("no readable result.json in the run directory", str(path), type(exc).__name__) from None


def first_failure(run_dir: str | Path) -> Failure | None:
    """The first failing rank of the run in ``run_dir`` (``None`` when no rank failed).

    This is the record node failover reads: rank, local rank, host, exit code
    or signal, and seconds after start.
    """
    record = read_result(run_dir).get("first_failure")
    return None if record is None else Failure(**record)
