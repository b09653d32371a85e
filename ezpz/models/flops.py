"""FLOPs per token of a :class:`~ezpz.models.GPT` and model FLOPs utilisation (MFU).

MFU = achieved model FLOP/s ÷ the device's peak FLOP/s.  Model FLOPs follow
the PaLM paper (Chowdhury et al. 2022, appendix B): a training step costs
``6 N + 12 L d T`` FLOPs per token for ``N`` parameters (position embeddings
excluded, as in nanoGPT; the tied head counted once),
``L`` layers, width ``d`` and context ``T`` (forward + backward, no
recomputation).  Peaks are the vendors' dense (no sparsity) figures per
device as torch sees it (one MI250X GCD, one GPU).  Devices not in the table
(every CPU) have no MFU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ezpz.models.gpt import GPTConfig

__all__ = ["PEAK_FLOPS", "flops_per_token", "mfu", "peak_flops"]

#: Dense peak FLOP/s by (device-name fragment, dtype), from vendor data sheets.
PEAK_FLOPS: dict[tuple[str, str], float] = {
    ("H200", "bf16"): 989e12,
    ("H200", "fp16"): 989e12,
    ("H100", "bf16"): 989e12,
    ("H100", "fp16"): 989e12,
    ("A100", "bf16"): 312e12,
    ("A100", "fp16"): 312e12,
    ("A100", "fp32"): 19.5e12,
    ("MI300X", "bf16"): 1307e12,
    ("MI300X", "fp16"): 1307e12,
    # torch sees each of the two MI250X dies (GCDs) as one device: half the card.
    ("MI250X", "bf16"): 191.5e12,
    ("MI250X", "fp16"): 191.5e12,
}


def flops_per_token(cfg: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token: ``6 * n_params + 12 * layers * dim * seq_len``."""
    return 6.0 * n_params + 12.0 * cfg.layers * cfg.dim * cfg.seq_len


def peak_flops(device_name: str, dtype: str) -> float | None:
    """Return the known dense peak FLOP/s of ``device_name`` at ``dtype``, or None."""
    for (fragment, kind), peak in PEAK_FLOPS.items():
        if kind == dtype and fragment.lower() in device_name.lower():
            return peak
    return None


def mfu(tokens_per_s: float, flops_token: float, peak: float | None, devices: int) -> float | None:
    """Return model FLOPs utilisation in [0, 1] over ``devices``, or None without a peak."""
    if peak is None or devices < 1:
        return None
    return tokens_per_s * flops_token / (peak * devices)
