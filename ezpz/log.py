"""Logging for ezpz and for the programs it launches.

``get_logger(name)`` returns a standard :class:`logging.Logger` under the
``ezpz`` hierarchy.  The hierarchy is configured once per process:

* console: a rich handler on rank 0 only (every rank, each line tagged
  ``[rank N]``, with ``EZPZ_LOG_FROM_ALL_RANKS=1``); plain text when stderr
  is not a terminal, or ``NO_COLOR`` is set, or ``TERM=dumb``;
* level: ``EZPZ_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``,
  ``CRITICAL`` or a number), validated with a one-line
  :class:`~ezpz.errors.SpecError`;
* file: with ``EZPZ_LOG_FILE=path`` (``ezpz launch --log-file`` sets it for
  every rank) or :func:`add_log_file`, a JSONL handler writing one object per
  record (``time``, ``level``, ``name``, ``rank``, ``message`` and, on
  errors, ``exc``), rotated by size (``EZPZ_LOG_FILE_MAX_BYTES``, default
  16 MiB; ``EZPZ_LOG_FILE_BACKUPS`` old files, default 5).  The file follows
  the console's rank rule; when other ranks log too, rank N writes
  ``<stem>.rankN<suffix>`` unless the path contains ``{rank}``.

Standard library and rich only: this runs in every rank.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from ezpz.errors import SpecError, closest
from ezpz.ranks import rank_info

__all__ = ["JsonlFormatter", "add_log_file", "get_logger", "log_level"]

_ROOT = "ezpz"
_TRUTHY = {"1", "true", "yes", "on"}
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


class _RankFilter(logging.Filter):
    """Pass records on rank 0, or on every rank when asked to; stamp ``record.rank``."""

    def __init__(self, rank: int, all_ranks: bool) -> None:
        super().__init__()
        self.rank = rank
        self.all_ranks = all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return self.all_ranks or self.rank == 0


class JsonlFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, name, rank, message[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single JSON line (no trailing newline)."""
        data = {
            "time": round(record.created, 6),
            "iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname,
            "name": record.name,
            "rank": getattr(record, "rank", 0),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def log_level(raw: str | None = None) -> int:
    """Parse a level name or number (default: ``EZPZ_LOG_LEVEL``, else INFO).

    Raises:
        SpecError: for an unknown name, naming the valid ones.
    """
    value = (os.environ.get("EZPZ_LOG_LEVEL", "INFO") if raw is None else raw).strip().upper() or "INFO"
    if value.isdigit():
        return int(value)
    if value == "WARN":
        value = "WARNING"
    if value not in _LEVELS:
        raise SpecError("EZPZ_LOG_LEVEL is not a log level", value, closest(value, _LEVELS))
    return logging.getLevelName(value)


def _plain() -> bool:
    return os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb" or not sys.stderr.isatty()


class _RichConsole(logging.Handler):
    """rich's handler for an interactive console, built at the first record shown.

    Importing rich and building its console costs ~40 ms; a process that
    configures logging and shows nothing (``ezpz launch`` in a terminal, most
    of the time) pays none of it.
    """

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag
        self.inner: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Show ``record`` through rich (imported on the first call)."""
        inner = self.inner
        if inner is None:
            # rich only for an interactive console, and only once something is shown.
            from rich.logging import RichHandler

            inner = self.inner = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
            inner.setFormatter(logging.Formatter(f"{self.tag}%(message)s"))
        inner.emit(record)


def _console_handler(all_ranks: bool) -> logging.Handler:
    tag = "[rank %(rank)s] " if all_ranks else ""
    if _plain():
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s: {tag}%(message)s", "%H:%M:%S"))
        return handler
    return _RichConsole(tag)


def _rank_state() -> tuple[int, bool]:
    try:
        rank = rank_info().rank
    except Exception:  # a broken environment must not stop logging
        rank = 0
    return rank, os.environ.get("EZPZ_LOG_FROM_ALL_RANKS", "").lower() in _TRUTHY


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SpecError(f"{name} is not an integer", raw, "give a whole number") from None


def add_log_file(
    path: str | os.PathLike[str], *, max_bytes: int | None = None, backups: int | None = None
) -> Path | None:
    """Add a JSONL file handler (rotated by size) to the ``ezpz`` loggers.

    Returns the file this rank writes, or ``None`` on a rank that does not log
    (every rank but 0, unless ``EZPZ_LOG_FROM_ALL_RANKS=1``).  ``{rank}`` in
    ``path`` is replaced by the rank.

    Raises:
        SpecError: when the file's directory does not exist or is not writable.
    """
    root = _configure_root()
    rank, all_ranks = _rank_state()
    if rank != 0 and not all_ranks:
        return None
    text = os.fspath(path)
    target = Path(text.replace("{rank}", str(rank)))
    if "{rank}" not in text and rank != 0:
        target = target.with_name(f"{target.stem}.rank{rank}{target.suffix}")
    if not target.parent.is_dir():
        raise SpecError("log file directory does not exist", str(target), "create it or choose another path")
    # Imported here: only runs that log to a file pay for logging.handlers.
    import logging.handlers

    try:
        handler = logging.handlers.RotatingFileHandler(
            target,
            maxBytes=_env_int("EZPZ_LOG_FILE_MAX_BYTES", 16 * 2**20) if max_bytes is None else max_bytes,
            backupCount=_env_int("EZPZ_LOG_FILE_BACKUPS", 5) if backups is None else backups,
            encoding="utf-8",
        )
    except OSError as exc:
        raise SpecError("cannot open the log file", str(target), exc.strerror or str(exc)) from None
    handler.setFormatter(JsonlFormatter())
    handler.addFilter(_RankFilter(rank, all_ranks))
    root.addHandler(handler)
    return target


def _configure_root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if getattr(root, "_ezpz_configured", False):
        return root
    level = log_level()
    rank, all_ranks = _rank_state()
    handler = _console_handler(all_ranks)
    handler.addFilter(_RankFilter(rank, all_ranks))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    root._ezpz_configured = True  # type: ignore[attr-defined]
    if os.environ.get("EZPZ_LOG_FILE"):
        add_log_file(os.environ["EZPZ_LOG_FILE"])
    return root


def get_logger(name: str = _ROOT) -> logging.Logger:
    """Return a logger under the ``ezpz`` hierarchy, configured once per process.

    Names outside ``ezpz`` (``__main__``, ``train``) become ``ezpz.<name>`` so
    user scripts share the same rank-aware handlers.
    """
    _configure_root()
    if name == _ROOT or name.startswith(_ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{_ROOT}.{name}")
