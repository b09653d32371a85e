r"""What :class:`~ezpz.runtime.history.History` reads: its ``EZPZ_HISTORY_*`` settings, metric names and values.

Pure apart from ``os.environ`` and the warnings it is handed: no files, no
collectives.  The rules are those of :mod:`ezpz.runtime.history`'s module
docstring (keys match ``[\w][\w.-]*``, ``time`` is reserved; numbers and
one-element arrays/tensors are metrics, anything else is skipped with one
warning per key).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ezpz.errors import HistoryError
from ezpz.runtime.crossrank import key_hash

__all__ = ["check_key", "env_flag", "env_number", "pick", "to_floats"]

_KEY = re.compile(r"[\w][\w.\-]*")
_RESERVED = {"time"}
_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off", ""}


def env_flag(name: str, default: bool) -> bool:
    """The boolean ``EZPZ_*`` variable ``name``, else ``default``; a malformed one is a :class:`HistoryError`."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUTHY:
        return True
    if value in _FALSY:
        return False
    raise HistoryError(f"{name} is not a boolean", raw, "use 1/0, true/false, yes/no or on/off")


def env_number(name: str, default: float) -> float:
    """The positive number in variable ``name``, else ``default`` (unset or blank)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HistoryError(f"{name} is not a number", raw, "give a positive number") from None
    if value <= 0:
        raise HistoryError(f"{name} must be positive", raw, "give a positive number")
    return value


def pick(arg: Any, env: str, default: bool) -> bool:
    """An argument wins; ``None`` means the variable ``env``, else ``default``."""
    return env_flag(env, default) if arg is None else bool(arg)


def check_key(key: object) -> HistoryError | None:
    """The error for a metric name History refuses, or ``None`` for a good one."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return HistoryError(
            "metric names must be words, dots or dashes (no '/' or spaces)",
            key if isinstance(key, str) else repr(key),
            "e.g. 'train.loss' or 'train_loss'",
        )
    if key in _RESERVED:
        return HistoryError("metric name is reserved", key, "rename it, e.g. 'dt' for a duration")
    return None


def to_floats(
    metrics: Mapping[str, Any],
    keys: Sequence[str] | None,
    hashes: dict[str, float],
    warn_once: Callable[..., None],
) -> tuple[dict[str, float], HistoryError | None]:
    """Validate ``metrics``' keys and turn their values into floats, in the caller's order.

    ``hashes`` caches each key's hash (new keys are checked and added);
    ``keys``, when given, are the tracked ones (others are ignored with one
    warning); ``warn_once(tag, message, *args)`` warns once per tag.  Tensors
    are read with one transfer per device.  Returns the values and the first
    bad key's error (then no values).
    """
    values: dict[str, float] = {}
    tensors: dict[Any, list[tuple[str, Any]]] = {}
    for key, value in metrics.items():
        if key not in hashes:
            error = check_key(key)
            if error is not None:
                return {}, error
            hashes[key] = key_hash(key)
        if keys is not None and key not in keys:
            warn_once(f"untracked:{key}", "History: metric %r is not in keys=; ignored", key)
            continue
        if isinstance(value, (bool, int, float)):
            values[key] = float(value)
            continue
        numel = getattr(value, "numel", None)
        if callable(numel) and type(value).__module__.startswith("torch") and numel() == 1:
            tensors.setdefault(value.device, []).append((key, value))
            values[key] = math.nan  # placeholder keeps the caller's order
            continue
        if not isinstance(value, (str, bytes)) and getattr(value, "size", 1) == 1:
            try:
                values[key] = float(value)
                continue
            except (TypeError, ValueError):
                pass
        warn_once(
            f"type:{key}",
            "History: metric %r is not a number (%s); skipped. Metrics are int, float, bool "
            "or one-element arrays/tensors",
            key,
            type(value).__name__,
        )
    values.update(_read(tensors))
    return values, None


def _read(tensors: Mapping[Any, list[tuple[str, Any]]]) -> dict[str, float]:
    """The one-element tensors' values by key, one transfer per device."""
    values: dict[str, float] = {}
    for items in tensors.values():
        numbers = sys.modules["torch"].stack([t.detach().reshape(()) for _, t in items]).cpu().double().tolist()
        values.update(zip((k for k, _ in items), numbers, strict=True))
    return values
