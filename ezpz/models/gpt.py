"""A minimal GPT-style decoder: token + position embedding, pre-norm blocks, tied head.

Each block is ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; attention is
causal and runs through :func:`torch.nn.functional.scaled_dot_product_attention`
(flash / memory-efficient kernels where the device has them).  The output
head shares its weight with the token embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ezpz.errors import SpecError
from ezpz.extras import require

require("torch", "torch")  # one clear line when the extra is missing

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

__all__ = ["GPT", "GPTConfig"]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`GPT`.

    Attributes:
        vocab_size: number of token ids.
        seq_len: longest context the position embedding covers.
        layers: number of transformer blocks.
        heads: attention heads per block; must divide ``dim``.
        dim: width of the residual stream.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        dropout: dropout probability (0 for the examples).
    """

    vocab_size: int
    seq_len: int = 128
    layers: int = 4
    heads: int = 4
    dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "layers", "heads", "dim", "mlp_ratio"):
            value = getattr(self, name)
            if value < 1:
                raise SpecError(f"model {name} must be at least 1", value)
        if self.dim % self.heads:
            raise SpecError(
                "model dim must be a multiple of heads",
                f"dim={self.dim}, heads={self.heads}",
                f"try dim={self.heads * max(1, round(self.dim / self.heads))}",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError("dropout must be in [0, 1)", self.dropout)

    def to_dict(self) -> dict[str, int | float]:
        """Return the fields as a plain dict (for logs and run reports)."""
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused QKV projection."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the past of every position of ``x`` (batch, time, dim)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim, bias=False),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim, bias=False),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` (batch, time, dim)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """A GPT-style decoder language model.

    ``model(ids)`` returns logits (batch, time, vocab); ``model(ids, targets)``
    returns the mean cross-entropy loss (nats per token) instead.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by depth so the stream stays O(1).
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, *, embeddings: bool = True) -> int:
        """Count parameters (the tied head once); without position embeddings if asked."""
        total = sum(p.numel() for p in self.parameters())
        return total if embeddings else total - self.pos_emb.weight.numel()

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits for ``ids`` (batch, time), or the loss against ``targets``."""
        t = ids.shape[1]
        if t > self.cfg.seq_len:
            raise SpecError("input is longer than the model's seq_len", t, f"at most {self.cfg.seq_len}")
        pos = torch.arange(t, device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.8,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``ids`` (batch, time) by sampling ``max_new_tokens`` tokens."""
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            context = ids[:, -self.cfg.seq_len :]
            logits = self(context)[:, -1, :].float() / max(temperature, 1e-6)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
        self.train(was_training)
        return ids
