"""Helpers for tests that watch real rank processes: liveness and the ranks' JSON records."""

from __future__ import annotations

import json
import re
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie is dead for our purposes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name (field 2) may hold spaces and parentheses: the state follows its last ")".
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def records(stdout: str) -> list[dict]:
    """The ranks' one-line JSON records in ``stdout``, sorted by RANK.

    Found by pattern, not by line: a launcher may forward two ranks' chunks on one line.
    """
    found = (json.loads(match) for match in re.findall(r"\{[^{}]*\}", stdout))
    return sorted(found, key=lambda r: int(r["RANK"]))
