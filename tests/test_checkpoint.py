"""ezpz.checkpoint in one process: round trip, atomic listing, pruning, bad input, never half-loaded.

Multi-rank behaviour (DDP, FSDP, HSDP, async, SIGKILL mid-save, other world
sizes) runs for real in tests/test_checkpoint_multirank.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import ezpz  # noqa: E402
from ezpz.errors import CheckpointError  # noqa: E402
from ezpz.runtime import checkpoint, checkpoint_save, dist  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_process(monkeypatch, tmp_path_factory):
    # DCP's state-dict helpers set TORCHINDUCTOR_CACHE_DIR when unset (torch's side effect).
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "inductor"))
    for name in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "TORCH_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    dist.cleanup()
    yield
    checkpoint.wait()
    dist.cleanup()


def net(out: int = 2, hidden: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, out))


def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    model(torch.randn(3, 4)).pow(2).sum().backward()
    opt.step()


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def trained(tmp_path, steps=(1,), **kwargs):
    model = net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for s in steps:
        step(model, opt)
        checkpoint.save(tmp_path, model, opt, step=s, **kwargs)
    return model, opt


def test_round_trip_restores_weights_optimizer_rng_and_extra(tmp_path):
    model, opt = net(), None
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    step(model, opt)
    handle = checkpoint.save(tmp_path, model, opt, step=7, extra={"epoch": 2, "seen": [1, 2]})
    assert handle.done() and handle.wait() == tmp_path / "step-00000007"
    saved, moments = params(model), opt.state_dict()["state"][0]["exp_avg"].clone()
    draws = (random.random(), torch.rand(3))
    step(model, opt)  # move away from the checkpoint

    fresh = net()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.05)
    loaded = checkpoint.load_latest(tmp_path, fresh, fresh_opt)
    assert loaded == checkpoint.Loaded(step=7, path=tmp_path / "step-00000007", extra={"epoch": 2, "seen": [1, 2]})
    assert same(params(fresh), saved)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], moments)
    assert fresh_opt.state_dict()["state"][0]["step"].item() == 1
    assert (random.random(), torch.rand(3)) == (draws[0], pytest.approx(draws[1]))


def test_async_save_writes_the_state_of_the_call_not_of_later_steps(tmp_path):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    step(model, opt)
    saved = params(model)
    handle = checkpoint.save(tmp_path, model, opt, step=1, async_save=True)
    for _ in range(3):
        step(model, opt)  # training goes on while the files are written
    assert checkpoint.wait() == handle.path and handle.done()
    assert checkpoint.wait() is None  # nothing pending any more
    fresh = net()
    checkpoint.load(handle.path, fresh)
    assert same(params(fresh), saved)
    assert not same(params(model), saved)


def test_cleanup_waits_for_a_pending_async_save(tmp_path, monkeypatch):
    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    write_data = FileSystemWriter.write_data

    def slow(self, plan, planner):  # a slow filesystem: the write takes a while
        time.sleep(1.5)
        return write_data(self, plan, planner)

    monkeypatch.setattr(FileSystemWriter, "write_data", slow)
    handle = checkpoint.save(tmp_path, net(), step=1, async_save=True)
    assert not handle.done()
    dist.cleanup()
    assert handle.done() and checkpoint.latest(tmp_path) == tmp_path / "step-00000001"


def test_ezpz_checkpoint_is_this_module_and_import_ezpz_stays_light():
    assert ezpz.checkpoint is checkpoint
    code = "import sys, ezpz; ezpz.checkpoint.latest('.'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_keep_prunes_the_oldest_and_listing_ignores_cut_off_saves(tmp_path):
    trained(tmp_path, steps=(1, 2, 3, 4), keep=2)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    cut = tmp_path / "step-00000009.tmp"  # a save that was killed: shards, no rename
    cut.mkdir()
    (cut / "__0_0.distcp").write_bytes(b"partial")
    (tmp_path / "step-00000010").mkdir()  # no ezpz.json/.metadata: never complete
    (tmp_path / "notes.txt").write_text("x")
    assert checkpoint.latest(tmp_path) == tmp_path / "step-00000004"
    assert checkpoint.load_latest(tmp_path, net()).step == 4


def test_a_later_commit_removes_older_cut_off_saves(tmp_path):
    (tmp_path / "step-00000002.tmp").mkdir(parents=True)
    trained(tmp_path, steps=(3,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003"]


def test_keep_none_keeps_everything(tmp_path):
    trained(tmp_path, steps=(1, 2, 3, 4), keep=None)
    assert len(checkpoint.checkpoints(tmp_path)) == 4


def test_saving_a_complete_step_again_is_a_no_op(tmp_path):
    model, opt = trained(tmp_path, steps=(5,))
    before = (tmp_path / "step-00000005" / "ezpz.json").read_text()
    step(model, opt)
    handle = checkpoint.save(tmp_path, model, opt, step=5)
    assert handle.done() and (tmp_path / "step-00000005" / "ezpz.json").read_text() == before


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert checkpoint.load_latest(tmp_path / "missing", net()) is None
    assert checkpoint.latest(tmp_path) is None and checkpoint.checkpoints(tmp_path / "missing") == []


def test_unwritable_directory_is_one_line_and_writes_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError) as err:
        checkpoint.save(blocker / "ckpt", net(), step=1)
    line = err.value.line()
    assert line.startswith(f"checkpoint directory is not writable (given '{blocker / 'ckpt'}')")
    assert "\n" not in line and "pick a writable directory" in line
    assert blocker.read_text() == "x"


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (lambda: net(out=3), r"shapes differ \(checkpoint vs model\): 2.weight \(2, 8\) vs \(3, 8\), 2.bias"),
        (lambda: nn.Sequential(nn.Linear(4, 8)), r"checkpoint keys not in the model: 2.bias, 2.weight"),
        (
            lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Linear(2, 2)),
            r"model keys not in the checkpoint: 3.bias, 3.weight",
        ),
    ],
    ids=["shapes", "extra-keys", "missing-keys"],
)
def test_a_different_model_is_refused_and_left_untouched(tmp_path, other, match):
    trained(tmp_path)
    model = other()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    before = params(model)
    with pytest.raises(
        CheckpointError, match=r"^checkpoint is from a different model \(given '.*step-00000001'\); " + match
    ):
        checkpoint.load_latest(tmp_path, model, opt)
    assert same(params(model), before)
    assert not opt.state  # no zero-filled optimizer state left behind


def test_a_corrupt_shard_leaves_model_and_optimizer_unchanged(tmp_path):
    trained(tmp_path)
    shard = next((tmp_path / "step-00000001").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    model = net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    step(model, opt)
    before, moments = params(model), opt.state_dict()["state"][0]["exp_avg"].clone()
    with pytest.raises(CheckpointError, match=r"^checkpoint could not be loaded \(given '.*step-00000001'\)"):
        checkpoint.load_latest(tmp_path, model, opt)
    assert same(params(model), before)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], moments)


def test_optimizer_of_another_kind_is_refused(tmp_path):
    model = net()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    step(model, sgd)
    checkpoint.save(tmp_path, model, sgd, step=1)
    adam_model = net()
    adam = torch.optim.AdamW(adam_model.parameters(), lr=0.1)
    before = params(adam_model)
    with pytest.raises(
        CheckpointError, match=r"checkpoint could not be loaded .*Missing key in checkpoint state_dict: optim.state"
    ):
        checkpoint.load_latest(tmp_path, adam_model, adam)
    assert same(params(adam_model), before) and not adam.state


def test_weights_only_checkpoint_with_an_optimizer(tmp_path):
    checkpoint.save(tmp_path, net(), step=1)
    model = net()
    with pytest.raises(CheckpointError, match="checkpoint holds no optimizer state.*load with optimizer=None"):
        checkpoint.load_latest(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert checkpoint.load_latest(tmp_path, model).step == 1


def test_load_of_an_incomplete_path(tmp_path):
    cut = tmp_path / "step-00000003.tmp"
    cut.mkdir()
    with pytest.raises(CheckpointError, match=r"not a complete checkpoint \(given '.*step-00000003.tmp'\)"):
        checkpoint.load(cut, net())
    with pytest.raises(CheckpointError, match=r"no such checkpoint"):
        checkpoint.load(tmp_path / "nope", net())


def test_not_a_model_or_optimizer(tmp_path):
    with pytest.raises(CheckpointError, match=r"expected a torch.nn.Module \(given 'dict'\)"):
        checkpoint.save(tmp_path, {"w": 1}, step=1)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match=r"expected a torch.optim.Optimizer \(given 'str'\)"):
        checkpoint.save(tmp_path, net(), "adam", step=1)  # type: ignore[arg-type]


def test_extra_must_be_json(tmp_path):
    with pytest.raises(CheckpointError, match="extra must be JSON-serialisable"):
        checkpoint.save(tmp_path, net(), step=1, extra={"t": torch.zeros(1)})
    assert not list(tmp_path.iterdir())


def test_info_file_records_step_world_and_extra(tmp_path):
    checkpoint.save(tmp_path, net(), step=3, extra={"tokens": 10})
    info = json.loads((tmp_path / "step-00000003" / checkpoint.INFO_FILE).read_text())
    assert (info["step"], info["world_size"], info["extra"]) == (3, 1, {"tokens": 10})


@given(st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), st.text(max_size=4), st.none()))
def test_any_bad_step_is_a_checkpoint_error(value):
    with pytest.raises(CheckpointError, match="step must be a non-negative integer"):
        checkpoint_save._check_args(value, 3, None)


@given(st.one_of(st.integers(max_value=0), st.booleans(), st.floats(), st.text(max_size=4)))
def test_any_bad_keep_is_a_checkpoint_error(value):
    with pytest.raises(CheckpointError, match="keep must be a positive integer or None"):
        checkpoint_save._check_args(1, value, None)
