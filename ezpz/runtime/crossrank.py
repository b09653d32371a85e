"""History's cross-rank statistics: the packed vector one all_gather exchanges, and the statistics of its rows.

Pure (no torch, no files): :class:`ezpz.runtime.history.History` packs its
metrics with :func:`pack`, exchanges the vectors, grows them with
:func:`grown` when a rank reported more metrics than fit, checks the rows with
:func:`check_rows` and reads the statistics with :func:`row_stats`.  One
rank's vector is ``[calls, step, n_keys, error, hash(k1), v1, hash(k2), v2,
...]``, zero-padded to ``HEADER + 2 * capacity``; a zero hash is an empty slot
(:func:`key_hash` is never 0).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ezpz.errors import HistoryError
from ezpz.runtime.report import fmt

__all__ = [
    "HEADER",
    "Mismatch",
    "Stat",
    "capacity_for",
    "check_rows",
    "cross_rank_stats",
    "grown",
    "key_hash",
    "local_stats",
    "pack",
    "row_stats",
]

#: Slots before the (hash, value) pairs: calls, step, n_keys, error flag.
HEADER = 4


class Stat(tuple):
    """Cross-rank statistics of one metric at one step: ``(mean, std, min, max, n)``."""

    __slots__ = ()

    def __new__(cls, mean: float, std: float, lo: float, hi: float, n: int) -> Stat:
        """Build from mean, population std, min, max and the number of ranks."""
        return tuple.__new__(cls, (mean, std, lo, hi, n))

    @property
    def mean(self) -> float:
        """Mean over ranks."""
        return self[0]

    @property
    def std(self) -> float:
        """Population standard deviation over ranks."""
        return self[1]

    @property
    def min(self) -> float:
        """Minimum over ranks."""
        return self[2]

    @property
    def max(self) -> float:
        """Maximum over ranks."""
        return self[3]

    @property
    def n(self) -> int:
        """Number of ranks that reported the metric."""
        return self[4]

    def as_dict(self) -> dict[str, float]:
        """Return ``{"mean", "std", "min", "max", "n"}``."""
        return {"mean": self[0], "std": self[1], "min": self[2], "max": self[3], "n": self[4]}


def cross_rank_stats(values: list[float]) -> Stat:
    """Mean, population std, min and max of one metric's per-rank values (float64).

    Finite values use compensated two-pass sums (:func:`math.fsum`), exact
    for ``1e6 + ε``.  Any NaN makes every statistic NaN; an inf (no NaN)
    gives an IEEE mean, exact min/max and a NaN std.
    """
    n = len(values)
    if all(math.isfinite(v) for v in values):
        mean = math.fsum(values) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
        return Stat(mean, std, min(values), max(values), n)
    if any(math.isnan(v) for v in values):
        return Stat(math.nan, math.nan, math.nan, math.nan, n)
    return Stat(sum(values) / n, math.nan, min(values), max(values), n)


def local_stats(values: Mapping[str, float]) -> dict[str, Stat]:
    """The statistics of one rank alone (no collective): std 0, or NaN for a NaN or inf value."""
    return {k: Stat(v, 0.0 if math.isfinite(v) else math.nan, v, v, 1) for k, v in values.items()}


def key_hash(key: str) -> float:
    """48-bit hash of ``key`` plus one: exact in float64 and never 0 (the empty slot)."""
    return float(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest(), "big") + 1)


def capacity_for(n_keys: int) -> int:
    """The first vector's capacity for ``n_keys`` tracked metrics: a power of two, at least 32."""
    return 1 << max(5, (n_keys - 1).bit_length())


def pack(
    calls: int, step: float, values: Mapping[str, float], hashes: Mapping[str, float], capacity: int, failed: bool
) -> list[float]:
    """One rank's vector: the header, the first ``capacity`` (hash, value) pairs, zeros to the fixed width.

    ``n_keys`` counts every metric, also those that did not fit, so the
    ranks see that the vector must grow (:func:`grown`).
    """
    keys = list(values)
    vec = [float(calls), float(step), float(len(keys)), float(failed)]
    for key in keys[:capacity]:
        vec += (hashes[key], values[key])
    return vec + [0.0] * (HEADER + 2 * capacity - len(vec))


def grown(rows: list[list[float]], capacity: int) -> int | None:
    """The capacity to exchange again with when a rank reported more metrics than fit, else None.

    The next power of two at or above the largest count; never when a rank
    failed (every rank raises instead).
    """
    most = int(max(row[2] for row in rows))
    if most > capacity and not any(row[3] for row in rows):
        return 1 << (most - 1).bit_length()
    return None


def check_rows(rows: list[list[float]], error: HistoryError | None) -> None:
    """Raise on every rank when the ranks are out of step, this rank's metrics were bad (``error``), or another's were."""
    where = [(row[0], row[1]) for row in rows]
    if len(set(where)) > 1:
        raise HistoryError(
            "History.update was not called on every rank at the same step",
            ", ".join(f"rank {r}: call {int(c)} step {fmt(s)}" for r, (c, s) in enumerate(where)),
            "call update() on every rank at every step, or pass distributed=False",
        )
    if error is not None:
        raise error
    failed = [r for r, row in enumerate(rows) if row[3]]
    if failed:
        raise HistoryError(
            "History.update rejected the metrics of other ranks",
            f"ranks {failed}",
            "see the error those ranks raised",
        )


@dataclass(frozen=True)
class Mismatch:
    """Ranks whose metric sets differ from this rank's."""

    #: This rank's metric -> the ranks that did not report it (only metrics some rank lacks).
    missing: dict[str, list[int]]
    #: Ranks that reported a metric this rank lacks.
    extra: list[int]


def row_stats(hashes: Mapping[str, float], rows: list[list[float]]) -> tuple[dict[str, Stat], Mismatch | None]:
    """Per metric of this rank (``hashes``: name -> key hash, in order), its statistics over the rows.

    Metrics are matched by key hash, so the ranks may list them in any order
    and each statistic counts the ranks that reported it (``n``).  Returns
    also the :class:`Mismatch` when some rank's metric set differs.
    """
    per_rank = [{row[i]: row[i + 1] for i in range(HEADER, HEADER + 2 * int(row[2]), 2)} for row in rows]
    stats = {key: cross_rank_stats([d[h] for d in per_rank if h in d]) for key, h in hashes.items()}
    mine = set(hashes.values())
    if all(set(d) == mine for d in per_rank):
        return stats, None
    missing = {k: [r for r, d in enumerate(per_rank) if h not in d] for k, h in hashes.items()}
    extra = [r for r, d in enumerate(per_rank) if set(d) - mine]
    return stats, Mismatch({k: v for k, v in missing.items() if v}, extra)
