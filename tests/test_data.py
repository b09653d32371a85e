"""ezpz.data: distributed loaders, text preparation and the prepare-once cache.

Loader properties run in-process with explicit rank/world_size (the same
code path a real rank takes after reading torch.distributed); one test runs
four real ranks under ``ezpz launch`` (MPICH hydra, gloo on CPU).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from ezpz.data import DataError, Tokenizer, build_loader, cycle, prepare_text, set_epoch  # noqa: E402
from ezpz.data.cache import prepare_once  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORLD = 4


def _indices(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"idx": list(range(n))})


def _epoch(loader, epoch: int = 0) -> list[int]:
    set_epoch(loader, epoch)
    return [int(i) for batch in loader for i in batch["idx"]]


def _ranks(ds, batch_size: int, **kw) -> list[list[int]]:
    return [_epoch(build_loader(ds, batch_size, rank=r, world_size=WORLD, **kw)) for r in range(WORLD)]


@pytest.mark.parametrize("n", [400, 403])
def test_map_style_drop_last_covers_without_duplicates(n: int) -> None:
    parts = _ranks(_indices(n), 5, seed=1)
    seen = [i for part in parts for i in part]
    assert len(seen) == len(set(seen)), "an index appeared on two ranks"
    assert len({len(p) for p in parts}) == 1, "ranks got different numbers of samples"
    # only the uneven tail (n mod world, then whole batches) may be dropped
    assert len(seen) == (n // WORLD // 5) * 5 * WORLD
    if n % (WORLD * 5) == 0:
        assert sorted(seen) == list(range(n))


def test_map_style_no_drop_last_pads_every_sample_at_least_once() -> None:
    n = 403
    parts = _ranks(_indices(n), 5, seed=1, drop_last=False)
    counts = Counter(i for part in parts for i in part)
    assert set(counts) == set(range(n))
    # DistributedSampler pads 403 -> 404 by repeating one index: exactly one duplicate
    assert sum(counts.values()) == 404
    assert sum(c - 1 for c in counts.values()) == 1


def test_seeds_and_epochs_change_the_order_consistently() -> None:
    ds = _indices(200)
    a = _epoch(build_loader(ds, 10, seed=0, rank=1, world_size=WORLD))
    b = _epoch(build_loader(ds, 10, seed=0, rank=1, world_size=WORLD))
    c = _epoch(build_loader(ds, 10, seed=7, rank=1, world_size=WORLD))
    assert a == b, "same seed must give the same order"
    assert a != c, "different seeds must give different orders"
    loader = build_loader(ds, 10, seed=0, rank=1, world_size=WORLD)
    assert _epoch(loader, 0) != _epoch(loader, 1), "set_epoch must reshuffle"
    unshuffled = _epoch(build_loader(ds, 10, shuffle=False, rank=1, world_size=WORLD))
    assert unshuffled == list(range(1, 200, WORLD))


@pytest.mark.parametrize("num_shards", [8, 3])
def test_iterable_split_evenly_over_ranks_and_workers(num_shards: int) -> None:
    n, workers = 240, 2
    ds = _indices(n).to_iterable_dataset(num_shards=num_shards)
    parts = [
        _epoch(build_loader(ds, 5, shuffle=False, rank=r, world_size=WORLD, num_workers=workers)) for r in range(WORLD)
    ]
    seen = [i for part in parts for i in part]
    assert sorted(seen) == list(range(n)), "iterable parts must cover the data exactly once"
    assert {len(p) for p in parts} == {n // WORLD}, [len(p) for p in parts]


def test_iterable_shuffle_keeps_the_partition() -> None:
    ds = _indices(120).to_iterable_dataset(num_shards=4)
    parts = _ranks(ds, 6, seed=3)
    seen = [i for part in parts for i in part]
    assert sorted(seen) == list(range(120))
    assert seen != sorted(seen)


def test_cycle_runs_past_an_epoch() -> None:
    loader = build_loader(_indices(10), 5, rank=0, world_size=1)  # 2 batches per epoch
    it = cycle(loader)
    first = [next(it)["idx"].tolist() for _ in range(2)]
    second = [next(it)["idx"].tolist() for _ in range(2)]
    assert sorted(sum(first, [])) == sorted(sum(second, [])) and first != second


def test_bad_inputs_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="batch_size"):
        build_loader(_indices(4), 0)
    with pytest.raises(DataError, match="rank must be"):
        build_loader(_indices(4), 1, rank=4, world_size=4)
    with pytest.raises(DataError, match="no such dataset"):
        prepare_text(tmp_path / "missing.txt", seq_len=8, cache_dir=tmp_path)
    with pytest.raises(DataError, match="not a saved Hugging Face dataset"):
        prepare_text(tmp_path, seq_len=8, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="unknown tokenizer"):
        prepare_text(None, seq_len=8, tokenizer="bpe", cache_dir=tmp_path)
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"body": "hi"}\n')
    with pytest.raises(DataError, match="no 'text' column"):
        prepare_text(bad, seq_len=2, cache_dir=tmp_path / "c")


TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


def test_prepare_text_packs_blocks_and_caches(tmp_path: Path) -> None:
    src = tmp_path / "hamlet.txt"
    src.write_text(TEXT)
    cache = tmp_path / "cache"
    data = prepare_text(src, seq_len=15, cache_dir=cache, val_fraction=0.1)
    blocks = [row["input_ids"] for row in data.train] + [row["input_ids"] for row in data.val]
    assert all(len(b) == 16 for b in blocks)
    assert data.tokenizer.decode(sum(blocks, [])) == TEXT[: 16 * len(blocks)]
    assert len(blocks) == len(TEXT) // 16 and len(data.val) == -(-len(blocks) // 10)
    assert data.tokenizer.vocab_size == len(set(TEXT))
    assert 0 < data.unigram_entropy < torch.log(torch.tensor(float(len(set(TEXT))))).item()
    entries = [p for p in cache.iterdir() if p.is_dir() and p.name != "hf"]
    again = prepare_text(src, seq_len=15, cache_dir=cache, val_fraction=0.1)
    assert again.path == data.path and [p for p in cache.iterdir() if p.is_dir() and p.name != "hf"] == entries
    src.write_text(TEXT + "more")  # a changed source is a new cache entry
    assert prepare_text(src, seq_len=15, cache_dir=cache, val_fraction=0.1).path != data.path
    byte = prepare_text(src, seq_len=15, tokenizer="byte", cache_dir=cache)
    assert byte.tokenizer.vocab_size == 256


def test_json_and_saved_dataset_sources(tmp_path: Path) -> None:
    lines = tmp_path / "d.jsonl"
    lines.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXT.splitlines())))
    from_json = prepare_text(lines, seq_len=7, cache_dir=tmp_path / "c")
    saved = tmp_path / "saved"
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": TEXT.splitlines()})).save_to_disk(str(saved))
    from_disk = prepare_text(saved, seq_len=7, cache_dir=tmp_path / "c")
    assert from_json.tokenizer == from_disk.tokenizer
    assert from_json.train["input_ids"] == from_disk.train["input_ids"]


def test_tokenizers_round_trip() -> None:
    char = Tokenizer.fit("char", ["hello", " world"])
    assert char.decode(char.encode("low hold")) == "low hold"
    with pytest.raises(DataError, match="vocabulary"):
        char.encode("xyz")
    byte = Tokenizer("byte")
    assert byte.decode(byte.encode("naïve—ok")) == "naïve—ok"
    assert Tokenizer.from_dict(char.to_dict()) == char


def test_shakespeare_default(tmp_path: Path) -> None:
    data = prepare_text(seq_len=256, cache_dir=tmp_path)
    text = data.tokenizer.decode(data.train[0]["input_ids"])
    assert text.startswith("# A Midsummer Night's Dream")
    assert 60 < data.tokenizer.vocab_size < 120
    assert 3.0 < data.unigram_entropy < 3.6  # English characters: about 4.4-4.8 bits
    assert len(data.train) * 257 > 4_500_000


def _race(entry: str, log: str) -> None:
    def build(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        (tmp / "payload").write_text("done")

    prepare_once(Path(entry), build)
    assert (Path(entry) / "payload").read_text() == "done"


def test_prepare_once_builds_once_across_processes(tmp_path: Path) -> None:
    entry, log = tmp_path / "entry", tmp_path / "builds.log"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_race, args=(str(entry), str(log))) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builds.log", "entry", "entry.lock"]


PAYLOAD = """
import json, sys
from pathlib import Path
import ezpz
from ezpz.data import build_loader, prepare_text
from ezpz.data.cache import prepare_once

out = Path(sys.argv[1])
rank = ezpz.setup_torch()

def build(tmp):
    with open(out / "builds.log", "a") as f:
        f.write(f"{rank}\\n")
    (tmp / "ok").write_text("1")

prepare_once(out / "entry", build)
data = prepare_text(sys.argv[2], seq_len=7, cache_dir=out / "cache")
loader = build_loader(data.train.add_column("idx", list(range(len(data.train)))), 3, seed=5)
loader.sampler.set_epoch(0)
idx = [int(i) for b in loader for i in b["idx"]]
(out / f"rank{rank}.json").write_text(json.dumps({"idx": idx, "n": len(data.train)}))
ezpz.cleanup()
"""


@pytest.mark.slow
def test_four_real_ranks_share_the_data(tmp_path: Path) -> None:
    script = tmp_path / "payload.py"
    script.write_text(PAYLOAD)
    src = tmp_path / "t.txt"
    src.write_text(TEXT)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "ezpz", "launch", "-n", "4", "--", sys.executable, str(script), str(out), str(src)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "builds.log").read_text().split() == ["0"], "rank 0 builds, the others wait"
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(4)]
    n = results[0]["n"]
    seen = [i for r in results for i in r["idx"]]
    assert len(seen) == len(set(seen)) and len(seen) == (n // 4 // 3) * 3 * 4
    assert {len(r["idx"]) for r in results} == {len(seen) // 4}
