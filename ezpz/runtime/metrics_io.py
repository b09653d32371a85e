"""JSONL files for metrics and logs: a crash-safe writer and a forgiving reader.

Writer
    :class:`JsonlWriter` appends one JSON object per line with a single
    ``os.write`` on an ``O_APPEND`` descriptor, so there is no user-space
    buffer to lose: a line is in the file the moment ``write`` returns, and a
    ``SIGKILL`` can only ever cut the process *between* lines.  When the file
    passes ``max_bytes`` it is renamed ``<stem>.<n>.jsonl`` (n = 1, 2, ...) and
    a fresh file is started, so every file stays small and every file parses.

Values
    Lines are strict JSON (``allow_nan=False``): ``nan``, ``inf`` and
    ``-inf`` are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` so
    that ``jq``, JavaScript and pandas read every line; :func:`read_jsonl`
    turns them back into floats.

Reader
    :func:`read_jsonl` takes a file or a run directory (rotated parts first,
    in order, then the live file) and returns a list of dicts;
    :func:`to_dataframe` returns a flat pandas DataFrame of a History's
    metrics (one row per step).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ezpz.errors import HistoryError, plural
from ezpz.extras import require
from ezpz.log import get_logger

if TYPE_CHECKING:
    import pandas

__all__ = ["METRICS_FILE", "JsonlWriter", "decode_value", "jsonl_parts", "read_jsonl", "to_dataframe"]

#: Name of a History's metrics file inside its run directory.
METRICS_FILE = "metrics.jsonl"

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_PART = re.compile(r"^(?P<stem>.+)\.(?P<n>\d+)\.jsonl$")

log = get_logger("ezpz.metrics_io")


def encode_value(value: object) -> object:
    """Return ``value`` with non-finite floats replaced by ``"nan"``/``"inf"``/``"-inf"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: object) -> object:
    """Invert :func:`encode_value`: ``"nan"``/``"inf"``/``"-inf"`` strings become floats."""
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


class JsonlWriter:
    """Append-only JSONL file, one unbuffered ``write`` per line, rotated by size.

    Args:
        path: the live file (``.../metrics.jsonl``).  Its directory must exist.
        max_bytes: rotate when the live file would grow past this many bytes
            (``0`` never rotates).
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 64 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        if not self.path.parent.is_dir():
            raise HistoryError(
                "the JSONL file's directory does not exist",
                str(self.path),
                "create the directory first or pass an existing path",
            )
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise HistoryError(
                "cannot open the JSONL file for writing", str(self.path), exc.strerror or str(exc)
            ) from None

    def _rotate(self) -> None:
        os.close(self._fd)
        parts = [n for _, n in _numbered_parts(self.path)]
        target = self.path.with_name(f"{self.path.stem}.{max(parts, default=0) + 1}.jsonl")
        os.replace(self.path, target)
        self._fd = self._open()
        self._size = 0

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one line; the line is in the file when this returns."""
        data = (json.dumps(encode_value(record), allow_nan=False, separators=(",", ":")) + "\n").encode()
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _numbered_parts(live: Path) -> list[tuple[Path, int]]:
    """Rotated parts ``<stem>.<n>.jsonl`` next to ``live``, in rotation order."""
    found = []
    for path in live.parent.glob(f"{live.stem}.*.jsonl"):
        match = _PART.match(path.name)
        if match and match["stem"] == live.stem:
            found.append((path, int(match["n"])))
    return sorted(found, key=lambda item: item[1])


def jsonl_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Return the files of one JSONL stream, oldest first.

    ``path`` is the live file or a run directory (then ``metrics.jsonl`` in
    it).  Rotated parts come first in rotation order, the live file last.
    """
    live = Path(path)
    if live.is_dir():
        live = live / METRICS_FILE
    parts = [p for p, _ in _numbered_parts(live)]
    if live.is_file():
        parts.append(live)
    if not parts:
        raise HistoryError("no JSONL metrics found", str(path), f"expected {live} (or rotated parts)")
    return parts


def _lines(parts: list[Path]) -> Iterator[tuple[Path, int, str]]:
    for part in parts:
        with part.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield part, number, line


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every record of a JSONL stream (file or run directory) as dicts.

    A line that does not parse (only possible if the disk filled up or the
    file was edited) is skipped with one warning naming file and line;
    ``"nan"``/``"inf"``/``"-inf"`` strings come back as floats.
    """
    records: list[dict[str, Any]] = []
    bad: list[str] = []
    for part, number, line in _lines(jsonl_parts(path)):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad.append(f"{part.name}:{number}")
            continue
        if isinstance(value, dict):
            records.append(decode_value(value))  # type: ignore[arg-type]
    if bad:
        log.warning("skipped %s: %s", plural(len(bad), "unparseable JSONL line"), ", ".join(bad[:5]))
    return records


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one History record to ``step``, ``time`` and per-metric columns.

    Each metric ``k`` gives ``k`` (cross-rank mean), ``k/std``, ``k/min``,
    ``k/max`` and ``k/n`` (ranks that reported it).
    """
    row: dict[str, Any] = {"step": record.get("step"), "time": record.get("time")}
    stats = record.get("stats") or {}
    for key, value in (record.get("metrics") or {}).items():
        row[key] = value
    for key, stat in stats.items():
        row[key] = stat.get("mean")
        for name in ("std", "min", "max", "n"):
            row[f"{key}/{name}"] = stat.get(name)
    return row


def to_dataframe(path: str | os.PathLike[str]) -> pandas.DataFrame:
    """Return a History's metrics as a pandas DataFrame, one row per ``update``.

    Columns: ``step``, ``time``, and for every metric ``k``: ``k`` (the
    cross-rank mean), ``k/std``, ``k/min``, ``k/max``, ``k/n``.  Needs
    pandas (``pip install pandas``).
    """
    pd = require("pandas", "data")
    return pd.DataFrame([flatten_record(r) for r in read_jsonl(path) if "step" in r])
