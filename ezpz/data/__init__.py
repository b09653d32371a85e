"""Data for distributed training: text datasets, tokenisation, packing, loaders.

Names load lazily, so ``import ezpz.data`` imports neither torch nor
``datasets``; the first use of a name imports what it needs and, when an
extra is missing, raises one line naming it (``pip install 'ezpz[data]'``).

* :func:`prepare_text` / :func:`random_data` -> :class:`TextData` (packed,
  cached token blocks; see :mod:`ezpz.data.text` for the sources);
* :func:`build_loader` -> a rank-aware ``DataLoader``; :func:`cycle` and
  :func:`set_epoch` drive its epochs (see :mod:`ezpz.data.loader`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ezpz.extras import lazy_module

_LAZY: dict[str, str] = {
    "DataError": "ezpz.errors",
    "TextData": "ezpz.data.text",
    "Tokenizer": "ezpz.data.text",
    "load_text": "ezpz.data.text",
    "prepare_text": "ezpz.data.text",
    "random_data": "ezpz.data.text",
    "shakespeare_files": "ezpz.data.text",
    "build_loader": "ezpz.data.loader",
    "cycle": "ezpz.data.loader",
    "set_epoch": "ezpz.data.loader",
}

__all__ = [
    "DataError",
    "TextData",
    "Tokenizer",
    "build_loader",
    "cycle",
    "load_text",
    "prepare_text",
    "random_data",
    "set_epoch",
    "shakespeare_files",
]

if TYPE_CHECKING:
    from ezpz.data.loader import build_loader, cycle, set_epoch
    from ezpz.data.text import (
        TextData,
        Tokenizer,
        load_text,
        prepare_text,
        random_data,
        shakespeare_files,
    )
    from ezpz.errors import DataError


__getattr__, __dir__ = lazy_module(__name__, _LAZY, globals())
