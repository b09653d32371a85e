"""ezpz.runtime.wrap and ezpz.runtime.profiling in one process: validation, auto choice, blocks, profiler.

Multi-rank DDP/FSDP behaviour runs for real in tests/test_dist_multirank.py.
Accelerators are mocked where named (no GPU on this machine).
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ezpz.errors import DistError  # noqa: E402
from ezpz.ranks import RankInfo  # noqa: E402
from ezpz.runtime import dist, fsdp, wrap  # noqa: E402
from ezpz.runtime.profiling import attach_step_profiler  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_process(monkeypatch):
    for name in (
        "RANK",
        "WORLD_SIZE",
        "PMI_RANK",
        "PMI_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "TORCH_DEVICE",
        "TORCH_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    dist.cleanup()
    yield
    dist.cleanup()


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(8, 8), nn.ModuleList([nn.Linear(8, 8)])) for _ in range(3))
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer[0](x)
        return self.head(self.act(x))


@pytest.mark.parametrize("strategy", ["auto", "ddp", "fsdp"])
def test_world_size_one_returns_the_model_unchanged(strategy, caplog):
    dist.setup_torch()
    model = Blocks()
    assert wrap.wrap_model(model, strategy=strategy) is model


def test_hsdp_validation_in_one_process(monkeypatch, tmp_path):
    """What HSDP refuses; the 2 x 2 mesh itself runs on 4 real ranks in test_checkpoint_multirank.py."""
    dist.setup_torch()
    model = Blocks()
    assert wrap.wrap_model(model, strategy="hsdp") is model and wrap.wrap_hsdp(model, shard_size=1) is model
    for bad in (0, -2, "2", True, 1.5):
        with pytest.raises(DistError, match=r"shard_size must be a positive integer \(given .*\); valid: 1$"):
            wrap.wrap_model(Blocks(), strategy="hsdp", shard_size=bad)  # type: ignore[arg-type]
    with pytest.raises(
        DistError, match=r"shard_size is for strategy='hsdp' only \(given 'shard_size=2 with strategy=fsdp'\)"
    ):
        wrap.wrap_model(Blocks(), strategy="fsdp", shard_size=2)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        flat = torch.distributed.device_mesh.init_device_mesh("cpu", (1,))
        with pytest.raises(
            DistError, match=r"HSDP needs a 2-D device mesh \(replicate, shard\) \(given '1-D mesh of shape \(1,\)'\)"
        ):
            wrap.wrap_hsdp(Blocks(), device_mesh=flat)
        square = torch.distributed.device_mesh.init_device_mesh("cpu", (1, 1), mesh_dim_names=wrap.HSDP_DIMS)
        with pytest.raises(DistError, match="give shard_size or device_mesh, not both"):
            wrap.wrap_hsdp(Blocks(), device_mesh=square, shard_size=1)
    finally:
        torch.distributed.destroy_process_group()


def test_hsdp_mesh_needs_a_divisor_of_the_world(monkeypatch):
    # Mock: a 6-rank world whose nodes run 4 ranks each (uneven); no mesh is built before the check.
    monkeypatch.setattr(fsdp, "world_size", lambda: 6)
    monkeypatch.setattr(
        fsdp, "rank_info", lambda: RankInfo(rank=0, world_size=6, local_rank=0, local_world_size=4, source="test")
    )
    with pytest.raises(DistError) as err:
        wrap.hsdp_mesh()
    assert err.value.line() == (
        "world size is not a multiple of the ranks per node (default shard_size) (given 'world_size=6, shard_size=4'); "
        "pass shard_size= one of 1, 2, 3, 6, or launch the same number of ranks on every node"
    )
    with pytest.raises(DistError, match=r"multiple of the shard_size \(given 'world_size=6, shard_size=5'\)"):
        wrap.hsdp_mesh(5)


def test_unknown_strategy():
    with pytest.raises(DistError, match=r"unknown strategy \(given 'fsdp2'\).*did you mean 'fsdp'"):
        wrap.wrap_model(Blocks(), strategy="fsdp2")


def test_not_a_module():
    with pytest.raises(DistError, match=r"expected a torch.nn.Module \(given 'dict'\)"):
        wrap.wrap_model({"w": 1}, strategy="ddp")


def test_already_wrapped_model_is_refused(monkeypatch, tmp_path):
    # Building a DDP module sets TORCHINDUCTOR_CACHE_DIR when unset (torch's side effect).
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(Blocks())
        for strategy in ("auto", "ddp", "fsdp"):
            with pytest.raises(DistError, match="model is already wrapped.*DistributedDataParallel"):
                wrap.wrap_model(ddp, strategy=strategy)
    finally:
        torch.distributed.destroy_process_group()


def test_parameters_on_the_wrong_device(monkeypatch):
    # Mock: pretend this rank's device is cuda:0 (no GPU here); the model stays on cpu.
    monkeypatch.setattr(
        dist, "get_torch_device", lambda as_torch_device=False: torch.device("cuda", 0) if as_torch_device else "cuda"
    )
    with pytest.raises(DistError) as err:
        wrap.wrap_model(Blocks(), strategy="ddp")
    line = err.value.line()
    assert "parameter is on the wrong device" in line and "embed.weight on cpu" in line
    assert "cuda:0" in line and "\n" not in line


@pytest.mark.parametrize(
    ("given", "device", "expected"),
    [
        ("bf16", "cpu", torch.bfloat16),
        ("FP32", "cpu", torch.float32),
        (torch.float16, "cuda", torch.float16),
        (None, "cpu", None),
    ],
)
def test_dtype_names(given, device, expected):
    assert wrap.resolve_dtype(given, device) == expected


@pytest.mark.parametrize(
    ("given", "device", "match"),
    [
        ("fp8", "cpu", "unknown dtype"),
        (torch.int32, "cpu", "floating type"),
        (3, "cpu", "string or torch.dtype"),
        ("fp16", "cpu", "cannot train in this dtype"),
    ],
)
def test_bad_dtypes(given, device, match):
    with pytest.raises(DistError, match=match):
        wrap.resolve_dtype(given, device)


def test_bf16_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # mock: no GPU here
    with pytest.raises(DistError, match=r"device cuda cannot train in this dtype \(given 'bfloat16'\)"):
        wrap.resolve_dtype("bf16", "cuda")


def test_auto_strategy_choice():
    gib = 2**30
    assert wrap.choose_strategy(1 * gib, 80 * gib)[0] == "ddp"
    strategy, reason = wrap.choose_strategy(14 * gib, 80 * gib)  # 7B bf16 on an 80 GB GPU
    assert strategy == "fsdp"
    assert "56.00 GiB vs 40.00 GiB" in reason


def test_blocks_are_the_outermost_module_list_children():
    model = Blocks()
    assert wrap.find_blocks(model) == list(model.layers)
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    assert wrap.find_blocks(seq) == [seq[0], seq[2]]


def _train(model, steps, eval_between=False):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        model(torch.randn(4, 4)).sum().backward()
        opt.step()
        if eval_between:
            model.eval()
            with torch.no_grad():
                model(torch.randn(4, 4))


def test_torch_profiler_writes_a_trace_after_its_window(tmp_path):
    model = Blocks()
    prof = attach_step_profiler(model, "torch", tmp_path, wait=1, warmup=1, active=2)
    _train(model, 3, eval_between=True)  # eval forwards do not count as steps
    assert not prof.done
    _train(model, 3)
    assert prof.done and prof.output == tmp_path / "trace-rank0.json"
    events = json.loads(prof.output.read_text())["traceEvents"]
    assert any("aten::addmm" in e.get("name", "") for e in events)
    assert not model._forward_pre_hooks  # the hook removed itself


def test_pyinstrument_profiler_via_wrap_model(tmp_path):
    model = wrap.wrap_model(Blocks(), strategy="ddp", profile="pyinstrument", profile_dir=tmp_path)
    model.ezpz_profiler.active = 1
    _train(model, 4)
    assert model.ezpz_profiler.output == tmp_path / "pyinstrument-rank0.html"
    assert "pyinstrument" in model.ezpz_profiler.output.read_text()[:5000].lower()


def test_profiler_stop_flushes_a_short_loop(tmp_path):
    model = Blocks()
    prof = attach_step_profiler(model, "torch", tmp_path, wait=0, warmup=1, active=50)
    _train(model, 2)
    prof.stop()
    assert (tmp_path / "trace-rank0.json").exists()


def test_unknown_profiler(tmp_path):
    with pytest.raises(DistError, match=r"unknown profiler \(given 'nsys'\)"):
        attach_step_profiler(Blocks(), "nsys", tmp_path)
