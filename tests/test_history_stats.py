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
from ezpz.runtime.crossrank import (
    HEADER,
    Mismatch,
    Stat,
    capacity_for,
    check_rows,
    cross_rank_stats,
    grown,
    key_hash,
    local_stats,
    pack,
    row_stats,
)
from ezpz.runtime.history import History


def history() -> History:
    return History(jsonl=False, report=False, wandb=False, plot=False, distributed=False)


def row(values: dict[str, float], calls: int = 1, step: float = 5, error: bool = False, width: int = 6) -> list[float]:
    """One rank's packed vector: header, then (key hash, value) pairs, then zeros."""
    packed = [float(calls), float(step), float(len(values)), float(error)]
    for key, value in values.items():
        packed += [key_hash(key), value]
    return packed + [0.0] * (4 + 2 * width - len(packed))


def stats_of(h: History, mine: dict[str, float], rows: list[list[float]]) -> dict[str, tuple]:
    h._hashes.update({k: key_hash(k) for k in mine})
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
        check_rows(rows, None)
    line = err.value.line()
    assert line.startswith("History.update was not called on every rank at the same step")
    assert "rank 0: call 3 step 7, rank 1: call 3 step 8, rank 2: call 4 step 8" in line


def test_a_rank_with_bad_metrics_makes_every_rank_raise() -> None:
    rows = [row({}), row({}, error=True), row({}), row({}, error=True)]
    with pytest.raises(HistoryError, match=r"rejected the metrics of other ranks \(given 'ranks \[1, 3\]'\)"):
        check_rows(rows, None)
    own = HistoryError("bad key", "a b")
    with pytest.raises(HistoryError) as err:
        check_rows(rows, own)
    assert err.value is own  # the rank's own error wins over the others'
    check_rows([row({}), row({})], None)  # agreeing rows pass


def test_the_console_line() -> None:
    line = History._line(10, {"loss": Stat(0.047, 0.022, 0.0, 0.1, 4), "lr": Stat(3e-4, 0.0, 3e-4, 3e-4, 4)})
    assert line == "step=10 loss=0.047(±0.022) lr=3.0e-04"
    assert History._line(1, {"x": Stat(1.0, 0.5, 1.0, 1.0, 1)}) == "step=1 x=1"


def test_local_stats_are_the_rank_alone() -> None:
    got = local_stats({"a": 2.0, "b": math.inf, "c": math.nan})
    assert got["a"] == (2.0, 0.0, 2.0, 2.0, 1)
    assert (got["b"].mean, got["b"].min, got["b"].max, got["b"].n) == (math.inf, math.inf, math.inf, 1)
    assert math.isnan(got["b"].std) and math.isnan(got["c"].std) and got["c"].n == 1


def test_key_hash_is_a_48_bit_integer_plus_one() -> None:
    # The wire format every rank must agree on: blake2b, 6 bytes, big-endian, plus one.
    assert key_hash("loss") == 227717882051079.0
    hashes = {key_hash(k) for k in ("", "a", "b", "loss", "train.loss")}
    assert len(hashes) == 5
    assert all(h.is_integer() and 1 <= h <= 2**48 for h in hashes)


@pytest.mark.parametrize(("keys", "capacity"), [(0, 32), (1, 32), (32, 32), (33, 64), (64, 64), (65, 128)])
def test_the_first_capacity_is_a_power_of_two_of_at_least_32(keys: int, capacity: int) -> None:
    assert capacity_for(keys) == capacity


def test_pack_lays_out_the_header_the_pairs_and_the_padding() -> None:
    values = {"a": 1.5, "b": -2.0}
    hashes = {"a": 11.0, "b": 22.0, "unused": 33.0}
    assert pack(7, 3.0, values, hashes, 3, False) == [7.0, 3.0, 2.0, 0.0, 11.0, 1.5, 22.0, -2.0, 0.0, 0.0]
    assert pack(0, 0.5, {}, hashes, 1, True) == [0.0, 0.5, 0.0, 1.0, 0.0, 0.0]


def test_pack_keeps_the_width_and_counts_the_metrics_that_did_not_fit() -> None:
    values = {"a": 1.0, "b": 2.0, "c": 3.0}
    vec = pack(1, 2.0, values, {"a": 10.0, "b": 20.0, "c": 30.0}, 2, False)
    assert vec == [1.0, 2.0, 3.0, 0.0, 10.0, 1.0, 20.0, 2.0]
    assert len(vec) == HEADER + 2 * 2


def test_the_vector_grows_to_the_next_power_of_two_of_the_largest_count() -> None:
    assert grown([row({}, width=2), [1.0, 5.0, 33.0, 0.0]], 32) == 64
    assert grown([[1.0, 5.0, 3.0, 0.0], row({}, width=2)], 2) == 4
    assert grown([[1.0, 5.0, 64.0, 0.0]], 32) == 64
    assert grown([[1.0, 5.0, 32.0, 0.0], [1.0, 5.0, 1.0, 0.0]], 32) is None  # it fits
    assert grown([[1.0, 5.0, 40.0, 0.0], [1.0, 5.0, 1.0, 1.0]], 32) is None  # a rank failed: all raise instead


def test_row_stats_name_the_mismatch() -> None:
    mine = {"x": 0.0, "y": 1.0}
    hashes = {"x": key_hash("x"), "y": key_hash("y")}
    rows = [row(mine), row({"y": 3.0}), row({"x": 4.0, "y": 5.0, "extra": 9.0}), row({"y": 1.0, "x": 2.0})]
    stats, mismatch = row_stats(hashes, rows)
    assert stats == {"x": (2.0, math.sqrt(8 / 3), 0.0, 4.0, 3), "y": (2.5, math.sqrt(2.75), 1.0, 5.0, 4)}
    assert mismatch == Mismatch({"x": [1]}, [2])
    # the same metrics in another order: matched by hash, no mismatch
    stats, mismatch = row_stats(hashes, [row(mine), row({"y": 3.0, "x": 2.0})])
    assert stats == {"x": (1.0, 1.0, 0.0, 2.0, 2), "y": (2.0, 1.0, 1.0, 3.0, 2)}
    assert mismatch is None
    # only extra metrics elsewhere: nothing missing here
    _, mismatch = row_stats({"y": key_hash("y")}, [row({"y": 1.0}), row({"y": 2.0, "z": 0.0})])
    assert mismatch == Mismatch({}, [1])


def test_the_errors_of_out_of_step_and_rejected_rows_in_full() -> None:
    with pytest.raises(HistoryError) as err:
        check_rows([row({}, calls=1, step=2.5), row({}, calls=2, step=2.5)], None)
    assert err.value.line() == (
        "History.update was not called on every rank at the same step "
        "(given 'rank 0: call 1 step 2.500, rank 1: call 2 step 2.500'); "
        "call update() on every rank at every step, or pass distributed=False"
    )
    with pytest.raises(HistoryError) as err:
        check_rows([row({}, error=True), row({})], None)
    assert err.value.line() == (
        "History.update rejected the metrics of other ranks (given 'ranks [0]'); see the error those ranks raised"
    )
