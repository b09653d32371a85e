"""ezpz.models: the GPT decoder and its FLOP / MFU accounting."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ezpz.errors import SpecError  # noqa: E402
from ezpz.models import GPT, GPTConfig, flops_per_token, mfu, peak_flops  # noqa: E402

# torch exports TORCHINDUCTOR_CACHE_DIR on the first optimizer step of a process;
# take that step here, outside the tests' os.environ guard.
torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).step()


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"vocab_size": 17, "seq_len": 16, "layers": 2, "heads": 2, "dim": 16, **kw}))


def test_config_rejects_bad_shapes() -> None:
    with pytest.raises(SpecError, match="multiple of heads"):
        GPTConfig(vocab_size=10, dim=30, heads=4)
    with pytest.raises(SpecError, match="layers must be at least 1"):
        GPTConfig(vocab_size=10, layers=0)
    with pytest.raises(SpecError, match="longer than the model's seq_len"):
        _model()(torch.zeros(1, 17, dtype=torch.long))


def test_shapes_tied_head_and_initial_loss() -> None:
    model = _model()
    ids = torch.randint(0, 17, (3, 16))
    assert model(ids).shape == (3, 16, 17)
    assert model.head.weight is model.tok_emb.weight
    n = model.num_params()
    assert n == sum(p.numel() for p in model.parameters())
    assert model.num_params(embeddings=False) == n - 16 * 16
    # an untrained model is close to uniform over the vocabulary
    assert abs(model(ids, ids).item() - math.log(17)) < 0.3


def test_attention_is_causal() -> None:
    model = _model().eval()
    ids = torch.randint(0, 17, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 17
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_learns_a_repeating_sequence() -> None:
    model = _model()
    ids = torch.arange(17).repeat(2)[:17].unsqueeze(0).repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = model(ids[:, :-1], ids[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


def test_generate_extends_and_keeps_the_prompt() -> None:
    model = _model()
    prompt = torch.randint(0, 17, (2, 5))
    g = torch.Generator().manual_seed(1)
    out = model.generate(prompt, 20, generator=g, top_k=5)  # longer than seq_len: context is cropped
    assert out.shape == (2, 25) and torch.equal(out[:, :5], prompt)
    assert int(out.max()) < 17 and model.training
    again = model.generate(prompt, 20, generator=torch.Generator().manual_seed(1), top_k=5)
    assert torch.equal(out, again)


def test_flops_and_mfu() -> None:
    cfg = GPTConfig(vocab_size=100, seq_len=64, layers=2, dim=32, heads=2)
    assert flops_per_token(cfg, 1000) == 6 * 1000 + 12 * 2 * 32 * 64
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "fp16") == 312e12
    assert peak_flops("cpu", "fp32") is None
    assert peak_flops("NVIDIA H100", "fp32") is None
    assert mfu(1000.0, 1e9, 1e13, 2) == pytest.approx(0.05)
    assert mfu(1000.0, 1e9, None, 2) is None
