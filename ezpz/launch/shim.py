"""Where the per-rank shell shim lives: ``sh RANK_SHIM CMD`` on every rank (see ``rank.sh``).

A module of its own so that resolving a plan (which names the shim) does
not load the supervision that reads the ranks' output.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RANK_SHIM"]

#: The per-rank shell shim, shipped beside this module.
RANK_SHIM = Path(__file__).with_name("rank.sh")
