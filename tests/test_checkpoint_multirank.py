"""ezpz.checkpoint and HSDP on real ranks: MPICH processes, CPU, gloo.

Three payload runs (tests/payloads/checkpoint_check.py), each checking much
at once to spare the 2 cores: a 2-rank round trip under ``ezpz launch``
(DDP blocking, FSDP async, an unwritable directory, keep=2) whose
checkpoints are then loaded here at world size 1; HSDP on 4 ranks as a 2 x 2
mesh (MPICH hydra with two fake hosts, so each "node" has 2 local ranks);
and an async save killed with SIGKILL mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from test_dist_multirank import BIN, PY, REPO, child_env, free_port, results, run  # noqa: E402
from torch import nn  # noqa: E402

from ezpz.runtime import checkpoint, dist  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

PAYLOAD = str(REPO / "tests" / "payloads" / "checkpoint_check.py")
sys.path.insert(0, str(REPO / "tests" / "payloads"))
from checkpoint_check import Net  # noqa: E402


@pytest.fixture
def one_process(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    for name in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "TORCH_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    dist.cleanup()
    yield
    checkpoint.wait()
    dist.cleanup()


def load_here(directory: Path, optimizer: bool = True) -> tuple[nn.Module, checkpoint.Loaded]:
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05) if optimizer else None
    loaded = checkpoint.load_latest(directory, model, opt)
    assert loaded is not None
    return model, loaded


def assert_params_equal(model: nn.Module, reference: dict[str, torch.Tensor]) -> None:
    got = dict(model.named_parameters())
    assert got.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(got[name].detach(), value), name


def test_two_rank_round_trip_then_load_at_world_size_one(tmp_path, one_process):
    out = tmp_path / "out"
    env = child_env(EZPZ_MASTER_PORT=str(free_port()))
    proc = run([PY, "-m", "ezpz", "launch", "-n", "2", "--", PY, PAYLOAD, "roundtrip", str(out)], env, limit=400)
    ranks = results(out, 2, proc)
    for r in ranks:
        for kind, wrapped in (("ddp", "DistributedDataParallel"), ("fsdp", "FSDPNet")):
            trip = r[kind]
            assert trip["type"] == wrapped
            assert trip["moved"] > 1e-3  # training after the save changed the weights ...
            assert trip["back"] == 0.0 and trip["moments_back"] == 0.0  # ... and the load undid it exactly
            assert trip["rng_same"]
            assert trip["losses_after_load"] == trip["losses_after_save"]  # resumed training is identical
            assert (trip["loaded_step"], trip["loaded_extra"], trip["saved_world"]) == (2, {"seen": 3}, 2)
            assert trip["listing"] == ["step-00000002"]
        assert r["fsdp"]["was_pending"]  # the async save returned before its files were written
        assert r["unwritable"].startswith(f"checkpoint directory is not writable (given '{out / 'a-file' / 'ckpt'}')")
        assert r["kept"] == ["step-00000005", "step-00000006"]
    assert ranks[0]["split_view"].startswith("checkpoint cannot be loaded on every rank")
    assert "rank 1: no such checkpoint" in ranks[0]["split_view"]
    assert ranks[1]["split_view"].startswith(f"no such checkpoint (given '{out / 'not-on-this-node'}')")
    shards = sorted(p.name for p in (out / "ddp" / "step-00000002").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own file

    reference = torch.load(out / "reference.pt")
    for kind in ("ddp", "fsdp"):  # a 2-rank checkpoint into a plain model, one process
        model, loaded = load_here(out / kind)
        assert (loaded.step, loaded.world_size) == (2, 2)
        assert_params_equal(model, reference[kind])


def test_hsdp_on_a_two_by_two_mesh_matches_ddp_and_round_trips(tmp_path):
    out = tmp_path / "out"
    argv = [str(BIN / "mpiexec"), "-launcher", "fork", "-n", "4", "-ppn", "2", "-hosts", "n1,n2"]
    proc = run([*argv, PY, PAYLOAD, "hsdp", str(out)], child_env(), limit=400)
    ranks = results(out, 4, proc)
    for r in ranks:
        assert r["world"] == 4
        assert (r["mesh_shape"], r["mesh_dims"]) == ([2, 2], ["replicate", "shard"])  # 2 ranks per "node"
        assert r["placements"] == ["R", "S(0)"]
        assert r["shards"] == {name: size // 2 for name, size in r["full_sizes"].items()}  # halves, not quarters
        assert r["hsdp_vs_ddp"] < 1e-5
        assert r["hsdp_losses"] == pytest.approx(r["ddp_losses"], rel=1e-5)
        assert (
            "world size is not a multiple of the shard_size (given 'world_size=4, shard_size=3')" in r["bad_shard_size"]
        )
        assert "one of 1, 2, 4" in r["bad_shard_size"]
        trip = r["round_trip"]
        assert trip["moved"] > 1e-3 and trip["back"] == 0.0 and trip["moments_back"] == 0.0
        assert trip["losses_after_load"] == trip["losses_after_save"] and trip["was_pending"]
    sums = [r["local_sum"] for r in ranks]
    assert sums[0] == sums[2] and sums[1] == sums[3] and sums[0] != sums[1]  # replicas hold the same shard


def test_sigkill_during_an_async_save_loads_the_previous_complete_one(tmp_path, one_process):
    out = tmp_path / "out"
    env = child_env(EZPZ_MASTER_PORT=str(free_port()))
    argv = [PY, "-m", "ezpz", "launch", "-n", "2", "--", PY, PAYLOAD, "killed", str(out)]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        markers = [out / f"writing-rank{r}" for r in range(2)]
        while not all(m.exists() and m.read_text() for m in markers):
            assert proc.poll() is None and time.monotonic() < deadline, "the ranks never reached the async write"
            time.sleep(0.5)
        for marker in markers:
            os.kill(int(marker.read_text()), signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    ckpt = out / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-00000001", "step-00000002.tmp"]
    assert sorted(p.name for p in (ckpt / "step-00000002.tmp").glob("*.distcp"))  # shards were being written
    model, loaded = load_here(ckpt)
    assert (loaded.step, loaded.path) == (1, ckpt / "step-00000001")
    assert_params_equal(model, torch.load(out / "reference.pt"))
    checkpoint.save(ckpt, model, step=3)  # the next commit clears the cut-off save
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-00000001", "step-00000003"]
