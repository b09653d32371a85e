"""Models for the examples: a small GPT-style decoder and its FLOP/MFU accounting.

``from ezpz.models import GPT, GPTConfig`` imports torch; ``import ezpz`` does
not import this package.
"""

from __future__ import annotations

from ezpz.models.flops import flops_per_token, mfu, peak_flops
from ezpz.models.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig", "flops_per_token", "mfu", "peak_flops"]
