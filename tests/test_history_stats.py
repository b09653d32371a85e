"""History's cross-rank statistics on rows as the all_gather delivers them, in one process.

The rows are built here in the packed layout the module documents
(``[calls, step, n_keys, error, hash(k1), v1, ...]``), standing in for other
ranks; the exchange itself (the collective, and its growth) runs on 4 real
ranks in tests/test_history_multirank.py.
"""

from __future__ import annotations

import math

import pytest

from ezpz.errors import HistoryError
from ezpz.runtime.history import History, Stat, _key_hash, cross_rank_stats


def history() -> History:
    return History(jsonl=False, report=False, wandb=False, plot=False, distributed=False)


def row(values: dict[str, float], calls: int = 1, step: float = 5, error: bool = False, width: int = 6) -> list[float]:
    """One rank's packed vector: header, then (key hash, value) pairs, then zeros."""
    packed = [float(calls), float(step), float(len(values)), float(error)]
    for key, value in values.items():
        packed += [_key_hash(key), value]
    return packed + [0.0] * (4 + 2 * width - len(packed))


def stats_of(h: History, mine: dict[str, float], rows: list[list[float]]) -> dict[str, tuple]:
    h._hashes.update({k: _key_hash(k) for k in mine})
    return {k: tuple(v) for k, v in h._stats(mine, rows).items()}


def test_cross_rank_stats_of_finite_values() -> None:
    assert cross_rank_stats([1.0, 2.0, 3.0, 4.0]) == (2.5, math.sqrt(1.25), 1.0, 4.0, 4)
    assert cross_rank_stats([7.0]) == (7.0, 0.0, 7.0, 7.0, 1)
    assert cross_rank_stats([-3.0, 3.0]) == (0.0, 3.0, -3.0, 3.0, 2)


def test_cross_rank_stats_nonfinite() -> None:
    mean, std, lo, hi, n = cross_rank_stats([1.0, math.inf, 2.0])
    assert (mean, lo, hi, n) == (math.inf, 1.0, math.inf, 3) and math.isnan(std)
    mean, std, lo, hi, n = cross_rank_stats([-math.inf, 1.0])
    assert (mean, lo, hi, n) == (-math.inf, -math.inf, 1.0, 2) and math.isnan(std)
    assert all(math.isnan(x) for x in cross_rank_stats([1.0, math.nan, math.inf])[:4])
    assert cross_rank_stats([math.nan, 1.0]).n == 2


def test_stat_fields() -> None:
    s = Stat(1.0, 0.5, 0.0, 2.0, 3)
    assert (s.mean, s.std, s.min, s.max, s.n) == (1.0, 0.5, 0.0, 2.0, 3)
    assert s.as_dict() == {"mean": 1.0, "std": 0.5, "min": 0.0, "max": 2.0, "n": 3}


def test_stats_when_every_rank_reports_the_same_metrics() -> None:
    mine = {"loss": 1.0, "lr": 0.5}
    rows = [row(mine), row({"loss": 3.0, "lr": 0.5}), row({"loss": 2.0, "lr": 0.5})]
    got = stats_of(history(), mine, rows)
    assert list(got) == ["loss", "lr"]
    assert got["loss"] == (2.0, math.sqrt(2 / 3), 1.0, 3.0, 3)
    assert got["lr"] == (0.5, 0.0, 0.5, 0.5, 3)


def test_stats_match_metrics_by_key_not_position() -> None:
    mine = {"a": 1.0, "b": 10.0}
    rows = [row(mine), row({"b": 30.0, "a": 3.0})]  # same keys, other order
    got = stats_of(history(), mine, rows)
    assert got["a"] == (2.0, 1.0, 1.0, 3.0, 2)
    assert got["b"] == (20.0, 10.0, 10.0, 30.0, 2)


def test_stats_with_different_metric_sets_count_the_ranks_that_report_each() -> None:
    mine = {"x": 0.0, "y": 1.0}
    rows = [row(mine), row({"y": 3.0}), row({"x": 4.0, "y": 5.0, "extra": 9.0})]
    h = history()
    seen: list[str] = []
    h._warn_once = lambda tag, message, *args: seen.append(tag)  # type: ignore[method-assign]
    got = stats_of(h, mine, rows)
    assert got == {"x": (2.0, 2.0, 0.0, 4.0, 2), "y": (3.0, math.sqrt(8 / 3), 1.0, 5.0, 3)}
    assert seen == ["mismatch"]


def test_same_sets_warn_nothing() -> None:
    mine = {"x": 0.0}
    h = history()
    seen: list[str] = []
    h._warn_once = lambda tag, message, *args: seen.append(tag)  # type: ignore[method-assign]
    stats_of(h, mine, [row(mine), row({"x": 2.0}, width=8)])
    assert seen == []


def test_rows_at_different_steps_are_refused_naming_each_rank() -> None:
    rows = [row({}, calls=3, step=7), row({}, calls=3, step=8), row({}, calls=4, step=8)]
    with pytest.raises(HistoryError) as err:
        history()._check_rows(rows, None)
    line = err.value.line()
    assert line.startswith("History.update was not called on every rank at the same step")
    assert "rank 0: call 3 step 7, rank 1: call 3 step 8, rank 2: call 4 step 8" in line


def test_a_rank_with_bad_metrics_makes_every_rank_raise() -> None:
    rows = [row({}), row({}, error=True), row({}), row({}, error=True)]
    with pytest.raises(HistoryError, match=r"rejected the metrics of other ranks \(given 'ranks \[1, 3\]'\)"):
        history()._check_rows(rows, None)
    own = HistoryError("bad key", "a b")
    with pytest.raises(HistoryError) as err:
        history()._check_rows(rows, own)
    assert err.value is own  # the rank's own error wins over the others'
    history()._check_rows([row({}), row({})], None)  # agreeing rows pass


def test_the_console_line() -> None:
    line = History._line(10, {"loss": Stat(0.047, 0.022, 0.0, 0.1, 4), "lr": Stat(3e-4, 0.0, 3e-4, 3e-4, 4)})
    assert line == "step=10 loss=0.047(±0.022) lr=3.0e-04"
    assert History._line(1, {"x": Stat(1.0, 0.5, 1.0, 1.0, 1)}) == "step=1 x=1"
