"""Logging for ezpz and for the programs it launches.

``get_logger(name)`` returns a standard :class:`logging.Logger` whose console
handler prints on rank 0 only (every rank, tagged, with
``EZPZ_LOG_FROM_ALL_RANKS=1``), at the level given by ``EZPZ_LOG_LEVEL``.
"""

from __future__ import annotations

import logging
import os
import sys

from ezpz.ranks import rank_info

__all__ = ["get_logger"]

_ROOT = "ezpz"
_TRUTHY = {"1", "true", "yes", "on"}


class _RankFilter(logging.Filter):
    """Pass records on rank 0, or on every rank (tagged) when asked to."""

    def __init__(self, rank: int, all_ranks: bool) -> None:
        super().__init__()
        self.rank = rank
        self.all_ranks = all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        if self.all_ranks:
            record.msg = f"[rank {self.rank}] {record.msg}"
            return True
        return self.rank == 0


def _console_handler() -> logging.Handler:
    plain = os.environ.get("NO_COLOR") is not None or not sys.stderr.isatty()
    if plain:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        return handler
    from rich.logging import RichHandler

    return RichHandler(show_path=False, rich_tracebacks=False, markup=False)


def _configure_root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if getattr(root, "_ezpz_configured", False):
        return root
    try:
        rank = rank_info().rank
    except Exception:  # a broken environment must not stop logging
        rank = 0
    all_ranks = os.environ.get("EZPZ_LOG_FROM_ALL_RANKS", "").lower() in _TRUTHY
    handler = _console_handler()
    handler.addFilter(_RankFilter(rank, all_ranks))
    root.addHandler(handler)
    root.setLevel(os.environ.get("EZPZ_LOG_LEVEL", "INFO").upper())
    root.propagate = False
    root._ezpz_configured = True  # type: ignore[attr-defined]
    return root


def get_logger(name: str = _ROOT) -> logging.Logger:
    """Return a logger under the ``ezpz`` hierarchy, configured once per process.

    Names outside ``ezpz`` (``__main__``, ``train``) become ``ezpz.<name>`` so
    user scripts share the same rank-aware handler.
    """
    _configure_root()
    if name == _ROOT or name.startswith(_ROOT + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{_ROOT}.{name}")
