"""Distributed data loaders over Hugging Face datasets.

:func:`build_loader` returns a :class:`torch.utils.data.DataLoader` whose
samples respect this process's rank and the world size:

* a map-style ``datasets.Dataset`` is sampled by a
  :class:`~torch.utils.data.distributed.DistributedSampler`: one shuffled
  permutation per epoch (seeded by ``seed + epoch``; call :func:`set_epoch`,
  or iterate with :func:`cycle`, to reshuffle), cut into ``world_size``
  interleaved slices.  With ``drop_last=True`` the tail that does not divide
  evenly is dropped, so no index appears twice; with ``drop_last=False`` the
  permutation is *padded* by repeating its first indices until it divides
  evenly, so every sample appears at least once and at most
  ``world_size - 1`` samples appear twice.
* an iterable ``datasets.IterableDataset`` is split over ranks × workers by
  :func:`datasets.distributed.split_dataset_by_node` with the combined index
  ``rank * num_workers + worker``: whole shards when the shard count divides
  by ``world_size * num_workers``, otherwise one example in every
  ``world_size * num_workers`` (so the parts differ by at most one example).
  Each worker yields whole batches.

Rank and world size come from ``torch.distributed`` when it is initialised,
else from the launcher's environment (:func:`ezpz.ranks.rank_info`); both can
be given explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from ezpz.data.cache import default_cache_dir, main_first
from ezpz.data.text import DataError, load_text
from ezpz.extras import require
from ezpz.ranks import rank_info

require("torch", "torch")  # one clear line when an extra is missing
require("datasets", "data")

import datasets  # noqa: E402
import torch  # noqa: E402
from datasets.distributed import split_dataset_by_node  # noqa: E402
from torch.utils.data import DataLoader, IterableDataset, get_worker_info  # noqa: E402
from torch.utils.data.distributed import DistributedSampler  # noqa: E402

__all__ = ["build_loader", "cycle", "set_epoch"]


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        found = dist.get_rank(), dist.get_world_size()
    else:
        info = rank_info(os.environ)
        found = info.rank, info.world_size
    rank = found[0] if rank is None else rank
    world_size = found[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError("rank must be in [0, world_size)", f"rank={rank}, world_size={world_size}")
    return rank, world_size


class _Sharded(IterableDataset):
    """An iterable dataset's part for one rank, split again over the loader's workers."""

    def __init__(self, dataset: Any, rank: int, world_size: int, batch_size: int, drop_last: bool):
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        """Reseed the dataset's shuffling for ``epoch``."""
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        worker = get_worker_info()
        workers, wid = (1, 0) if worker is None else (worker.num_workers, worker.id)
        part = split_dataset_by_node(self.dataset, rank=self.rank * workers + wid, world_size=self.world_size * workers)
        # .iter() batches inside datasets and does not split again by worker.
        yield from part.iter(batch_size=self.batch_size, drop_last_batch=self.drop_last)


def _load(source: str | Path, split: str, cache_dir: Path | None) -> Any:
    """Load a path: a saved dataset directory, or a data file read by a packaged builder."""
    with main_first():
        return load_text(source, cache_dir=cache_dir or default_cache_dir(), split=split)


def build_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    num_workers: int = 0,
    cache_dir: Path | None = None,
    split: str = "train",
    rank: int | None = None,
    world_size: int | None = None,
) -> Any:
    """Return a ``DataLoader`` over this rank's share of ``dataset``.

    Args:
        dataset: a ``datasets.Dataset`` (map-style), a ``datasets.IterableDataset``,
            or a path that :func:`ezpz.data.load_text` reads (rank 0 first).
        batch_size: samples per batch on this rank.
        shuffle: shuffle every epoch (map-style: a new permutation per
            :func:`set_epoch`; iterable: shard order plus a 1000-example buffer).
        seed: base seed; it must be the same on every rank.
        drop_last: drop the uneven tail (no duplicates) instead of padding it.
        num_workers: loader worker processes.
        cache_dir: where a loaded path is cached (default ``~/.cache/ezpz/data``).
        split: which split of a saved ``DatasetDict`` to read.
        rank: override this process's rank (default: from torch.distributed / environment).
        world_size: override the world size likewise.
    """
    if batch_size < 1:
        raise DataError("batch_size must be at least 1", batch_size)
    if isinstance(dataset, (str, Path)):
        dataset = _load(dataset, split, cache_dir)
    rank, world_size = _rank_world(rank, world_size)
    if isinstance(dataset, datasets.IterableDataset):
        if shuffle:
            dataset = dataset.shuffle(seed=seed, buffer_size=1000)
        sharded = _Sharded(dataset.with_format("torch"), rank, world_size, batch_size, drop_last)
        return DataLoader(sharded, batch_size=None, num_workers=num_workers)
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(
            "build_loader needs a datasets.Dataset, datasets.IterableDataset or a path",
            type(dataset).__name__,
        )
    return _map_style(dataset, batch_size, rank, world_size, shuffle, seed, drop_last, num_workers)


def _map_style(
    dataset: datasets.Dataset,
    batch_size: int,
    rank: int,
    world_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool,
    num_workers: int,
) -> Any:
    """A ``DataLoader`` over this rank's slice of ``dataset``, drawn by a ``DistributedSampler``."""
    sampler = DistributedSampler(
        cast(Any, dataset), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return DataLoader(
        cast(Any, dataset.with_format("torch")),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
    )


def set_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle ``loader`` (from :func:`build_loader`) for ``epoch``; same epoch on every rank."""
    target = loader.sampler if hasattr(loader.sampler, "set_epoch") else loader.dataset
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def cycle(loader: Any, start_epoch: int = 0) -> Iterator[Any]:
    """Yield batches forever, calling :func:`set_epoch` before every pass."""
    epoch = start_epoch
    while True:
        set_epoch(loader, epoch)
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise DataError(
                "the loader yields no batches on this rank", f"epoch {epoch}", "use a smaller batch size or more data"
            )
        epoch += 1
