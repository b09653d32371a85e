"""ezpz.runtime.dist in one process: detection, rendezvous decisions, world-size-1 path, bad input.

GPU paths (cuda/nccl, xpu/xccl, mps) are exercised through their detection
logic with ``torch.cuda.is_available`` & co. monkeypatched: this machine has
no accelerator (a mock, said so in each test).  Multi-rank behaviour runs
for real in tests/test_dist_multirank.py.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

torch = pytest.importorskip("torch")

from ezpz.errors import DistError, MissingExtraError  # noqa: E402
from ezpz.ranks import RankInfo  # noqa: E402
from ezpz.runtime import dist, rendezvous  # noqa: E402
from ezpz.runtime.device import set_device  # noqa: E402

pytestmark = pytest.mark.torch

ALL = lambda name: True  # noqa: E731  every backend "available" (mocked build)


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts and ends without ezpz's runtime state or a process group."""
    dist.cleanup()
    yield
    dist.cleanup()


@pytest.fixture
def no_launcher(monkeypatch):
    """A process started by nothing: no rank, rendezvous or device variables."""
    for name in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "PMI_RANK",
        "PMI_SIZE",
        "PALS_RANKID",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "PMIX_RANK",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
        "SLURM_NTASKS_PER_NODE",
        "MPI_LOCALRANKID",
        "MPI_LOCALNRANKS",
        "PMI_LOCAL_RANK",
        "PMI_LOCAL_SIZE",
        "PALS_LOCAL_RANKID",
        "PALS_LOCAL_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "EZPZ_PPN",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_RUN_ID",
        "TORCHELASTIC_USE_AGENT_STORE",
        "EZPZ_LAUNCH_ID",
        "TORCH_DEVICE",
        "TORCH_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- device detection (accelerators mocked: none on this machine) -----------------------------


def _gpus(monkeypatch, cuda=False, xpu=False, mps=False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: xpu)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_real_machine_is_cpu():
    assert dist.detect_device_type({}) == "cpu"


@pytest.mark.parametrize(
    ("have", "expected"),
    [
        ({"cuda": True, "xpu": True, "mps": True}, "cuda"),
        ({"xpu": True, "mps": True}, "xpu"),
        ({"mps": True}, "mps"),
        ({}, "cpu"),
    ],
)
def test_detection_order_with_mocked_accelerators(monkeypatch, have, expected):
    _gpus(monkeypatch, **have)  # mock: no GPU here
    assert dist.detect_device_type({}) == expected


def test_torch_device_override_wins_over_detection(monkeypatch):
    _gpus(monkeypatch, cuda=True)  # mock: no GPU here
    assert dist.detect_device_type({"TORCH_DEVICE": "cpu"}) == "cpu"
    assert dist.detect_device_type({"TORCH_DEVICE": "CUDA:1"}) == "cuda"


def test_unknown_torch_device_is_one_line_with_suggestion():
    with pytest.raises(DistError) as err:
        dist.detect_device_type({"TORCH_DEVICE": "cdua"})
    line = err.value.line()
    assert "unknown TORCH_DEVICE" in line and "'cdua'" in line and "did you mean 'cuda'" in line
    assert "\n" not in line


def test_torch_device_this_machine_lacks():
    with pytest.raises(DistError, match=r"does not have \(given 'xpu'\); available: cpu"):
        dist.detect_device_type({"TORCH_DEVICE": "xpu"})


# --- backend ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("device", "expected"), [("cuda", "nccl"), ("xpu", "xccl"), ("mps", "gloo"), ("cpu", "gloo")])
def test_default_backend_per_device(device, expected):
    assert dist.resolve_backend(device, environ={}, available=ALL) == expected


def test_xpu_falls_back_to_oneccl_when_torch_lacks_xccl():
    have = {"ccl", "gloo"}
    assert dist.resolve_backend("xpu", environ={}, available=have.__contains__) == "ccl"


def test_user_backend_is_never_overridden():
    env = {"TORCH_BACKEND": "nccl"}
    assert dist.resolve_backend("cuda", "gloo", environ=env, available=ALL) == "gloo"
    assert dist.resolve_backend("cuda", None, environ=env, available=ALL) == "nccl"


def test_backend_that_cannot_drive_the_device():
    with pytest.raises(DistError) as err:
        dist.resolve_backend("cpu", "nccl", environ={}, available=ALL)
    assert err.value.line() == (
        "backend argument does not work with device cpu (given 'nccl'); valid for cpu: gloo, mpi"
    )


def test_unknown_torch_backend_suggests():
    with pytest.raises(DistError, match=r"unknown TORCH_BACKEND \(given 'ncl'\).*did you mean 'nccl'"):
        dist.resolve_backend("cuda", environ={"TORCH_BACKEND": "ncl"}, available=ALL)


def test_backend_missing_from_this_torch_build():
    # Real check against this CPU build: it has no MPI backend.
    with pytest.raises(DistError, match=r"this torch build has no mpi backend"):
        dist.resolve_backend("cpu", environ={"TORCH_BACKEND": "mpi"})


# --- rendezvous decisions ---------------------------------------------------------------------

FOUR = RankInfo(rank=1, world_size=4, local_rank=1, local_world_size=4, source="PMI_RANK")


class FakeComm:
    """Stands in for MPI.COMM_WORLD of a 4-rank job: rank 0 on ``hosts[0]`` offered port 41000."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.calls = 0

    def allgather(self, mine):
        self.calls += 1
        replies = [(host, ("root-host", 41000) if i == 0 else None) for i, host in enumerate(self.hosts)]
        replies[FOUR.rank] = mine
        return replies


HERE = socket.gethostname()


def no_mpi(world_size):
    return None


def test_launcher_vars_are_trusted():
    env = {"MASTER_ADDR": "x1", "MASTER_PORT": "29511", "EZPZ_LAUNCH_ID": "job-1"}
    comm = FakeComm([HERE] * 4)
    rdv = dist.resolve_rendezvous(FOUR, environ=env, mpi_comm=lambda n: comm)
    assert (rdv.addr, rdv.port, rdv.how) == ("x1", 29511, "launcher (EZPZ_LAUNCH_ID)")
    assert comm.calls == 0


def test_port_argument_replaces_launcher_port_but_not_torchruns_agent_store():
    env = {"MASTER_ADDR": "x1", "MASTER_PORT": "29511", "EZPZ_LAUNCH_ID": "job-1"}
    assert dist.resolve_rendezvous(FOUR, port=30000, environ=env, mpi_comm=no_mpi).port == 30000
    env = {
        "MASTER_ADDR": "h",
        "MASTER_PORT": "29400",
        "TORCHELASTIC_RUN_ID": "r",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }
    rdv = dist.resolve_rendezvous(FOUR, port=30000, environ=env, mpi_comm=no_mpi)
    assert (rdv.port, rdv.agent_store) == (29400, True)


def test_stale_master_vars_are_replaced_by_an_mpi_agreement():
    # MASTER_* without TORCHELASTIC_RUN_ID / EZPZ_LAUNCH_ID: left over from an earlier job.
    env = {"MASTER_ADDR": "old-node", "MASTER_PORT": "29500"}
    one_node = dist.resolve_rendezvous(FOUR, environ=env, mpi_comm=lambda n: FakeComm([HERE] * 4))
    assert (one_node.addr, one_node.port, one_node.how) == ("127.0.0.1", 41000, "mpi")
    two_nodes = dist.resolve_rendezvous(FOUR, environ=env, mpi_comm=lambda n: FakeComm(["root-host", HERE, HERE, HERE]))
    assert (two_nodes.addr, two_nodes.port) == ("root-host", 41000)


def test_untrusted_vars_are_the_last_resort_without_mpi():
    env = {"MASTER_ADDR": "h", "MASTER_PORT": "29555"}
    rdv = dist.resolve_rendezvous(FOUR, environ=env, mpi_comm=no_mpi)
    assert (rdv.addr, rdv.port, rdv.how) == ("h", 29555, "environment")


def test_no_way_to_meet_is_a_clear_error():
    with pytest.raises(DistError) as err:
        dist.resolve_rendezvous(FOUR, environ={}, mpi_comm=no_mpi)
    line = err.value.line()
    assert "cannot agree on a rendezvous address" in line
    assert "world_size=4" in line and "pip install 'ezpz[mpi]'" in line


@pytest.mark.parametrize("raw", ["abc", "0", "70000"])
def test_bad_master_port(raw):
    env = {"MASTER_ADDR": "h", "MASTER_PORT": raw, "EZPZ_LAUNCH_ID": "j"}
    with pytest.raises(DistError, match="MASTER_PORT"):
        dist.resolve_rendezvous(FOUR, environ=env, mpi_comm=no_mpi)


# --- setup_torch in one process ---------------------------------------------------------------


def test_world_size_one_fast_path_ignores_stale_master_vars(no_launcher):
    no_launcher.setenv("MASTER_ADDR", "10.255.255.1")  # stale, unreachable
    no_launcher.setenv("MASTER_PORT", "1")
    assert dist.setup_torch(seed=3) == 0
    assert not torch.distributed.is_initialized()
    info = dist.get_dist_info()
    assert info["world_size"] == 1 and info["device"] == "cpu" and info["backend"] == "gloo"
    assert info["master_addr"] is None and info["initialized"] is False
    assert (dist.get_rank(), dist.get_local_rank(), dist.get_world_size()) == (0, 0, 1)
    assert dist.get_torch_device() == "cpu"
    assert dist.get_torch_device(as_torch_device=True) == torch.device("cpu")
    assert dist.get_torch_backend() == "gloo"
    dist.barrier()  # no group: a no-op, returns at once


def test_seed_is_rank_offset(no_launcher):
    dist.setup_torch(seed=11)
    a = torch.rand(3)
    torch.manual_seed(11)  # rank 0: seed + 0
    assert torch.equal(a, torch.rand(3))


def test_getters_read_the_launcher_before_setup(no_launcher):
    no_launcher.setenv("PMI_RANK", "2")
    no_launcher.setenv("PMI_SIZE", "4")
    no_launcher.setenv("MPI_LOCALRANKID", "0")
    no_launcher.setenv("MPI_LOCALNRANKS", "2")
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (2, 4, 0)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"TORCH_DEVICE": "tpu"}, "unknown TORCH_DEVICE"),
        ({"TORCH_BACKEND": "nccl"}, "does not work with device cpu"),
        ({"WORLD_SIZE": "0"}, "world size must be at least 1"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "rank is outside the world"),
    ],
)
def test_bad_environment_is_a_dist_error(no_launcher, env, match):
    for key, value in env.items():
        no_launcher.setenv(key, value)
    with pytest.raises(DistError, match=match):
        dist.setup_torch()


@pytest.mark.parametrize(("kwargs", "match"), [({"timeout": 0}, "timeout"), ({"port": 70000}, "port")])
def test_bad_arguments(no_launcher, kwargs, match):
    with pytest.raises(DistError, match=match):
        dist.setup_torch(**kwargs)


def test_multi_rank_without_a_way_to_meet_fails_before_touching_env(no_launcher):
    no_launcher.setenv("RANK", "1")
    no_launcher.setenv("WORLD_SIZE", "2")
    no_launcher.setattr(rendezvous, "_mpi_comm", no_mpi)
    before = dict(os.environ)
    with pytest.raises(DistError, match="cannot agree on a rendezvous"):
        dist.setup_torch()
    assert dict(os.environ) == before
    assert not torch.distributed.is_initialized()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ranks_that_never_meet_fail_at_the_init_timeout_and_restore_env(no_launcher):
    """Rank 1 of 2, rank 0 never comes: a real TCPStore connect to a port nobody listens on."""
    no_launcher.setenv("RANK", "1")
    no_launcher.setenv("WORLD_SIZE", "2")
    no_launcher.setenv("MASTER_ADDR", "127.0.0.1")
    no_launcher.setenv("MASTER_PORT", str(_free_port()))
    no_launcher.setenv("EZPZ_LAUNCH_ID", "test-never-meet")  # trusted: no MPI agreement is tried
    no_launcher.setenv("LOCAL_WORLD_SIZE", "2")
    before = dict(os.environ)
    with pytest.raises(DistError) as err:
        dist.setup_torch(timeout=1)
    line = err.value.line()
    assert "ranks did not meet within 1 s" in line and "rank 1 of 2" in line, line
    # setup_torch exported LOCAL_RANK (and the rest) for torch; the failure took them back.
    assert dict(os.environ) == before
    assert "LOCAL_RANK" not in os.environ
    assert not torch.distributed.is_initialized()
    assert dist.get_dist_info()["initialized"] is False


def test_timeout_accepts_seconds_and_timedelta():
    assert dist._as_timedelta(2.5) == timedelta(seconds=2.5)
    assert dist._as_timedelta(timedelta(minutes=1)) == timedelta(seconds=60)
    assert dist._as_timedelta(None) == timedelta(seconds=dist.DEFAULT_INIT_TIMEOUT)


def test_torch_missing_names_the_extra(no_launcher):
    no_launcher.setitem(sys.modules, "torch", None)  # import torch now fails like a missing extra
    with pytest.raises(MissingExtraError) as err:
        dist.setup_torch()
    assert "pip install 'ezpz[torch]'" in err.value.line()


def test_process_group_made_elsewhere_is_refused(no_launcher):
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(DistError, match="initialised outside ezpz"):
            dist.setup_torch()
    finally:
        torch.distributed.destroy_process_group()


def test_cleanup_never_raises_and_logs_the_failure(monkeypatch):
    class Broken:
        def destroy_process_group(self):
            raise RuntimeError("boom")

    seen: list[tuple[int, str]] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: seen.append((record.levelno, record.getMessage()))  # type: ignore[method-assign]
    logger = logging.getLogger("ezpz")
    logger.addHandler(handler)
    monkeypatch.setattr(dist, "_dist", lambda: Broken())
    try:
        dist.cleanup()  # must not raise
    finally:
        logger.removeHandler(handler)
    assert (logging.WARNING, "cleanup: destroying the process group failed: boom") in seen


def test_importing_runtime_modules_does_not_import_torch():
    code = (
        "import sys, ezpz, ezpz.runtime.dist, ezpz.runtime.wrap, ezpz.runtime.profiling; ezpz.setup_torch; "
        "assert 'torch' not in sys.modules and 'mpi4py' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_device_index_is_zero_under_an_ezpz_mask_else_the_local_rank():
    # No GPU here: device counts are given, not probed.
    assert dist.device_index(3, 4, {}) == 3
    assert dist.device_index(5, 4, {}) == 1
    assert dist.device_index(2, 0, {}) == 0
    masked = {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES": "4,5"}
    # Local rank 2 of 4 on 8 GPUs sees its block of two: its device is the first of them.
    assert dist.device_index(2, 2, masked) == 0
    # The plan asked for a mask but the variable is blank: fall back to the local rank.
    assert dist.device_index(1, 2, {**masked, "CUDA_VISIBLE_DEVICES": ""}) == 1


def test_set_device_picks_device_zero_of_a_masked_rank(monkeypatch):
    # Mocked: torch.cuda on this CPU machine.
    picked: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", picked.append)
    monkeypatch.setenv("EZPZ_DEVICE_VAR", "CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    set_device(torch, "cuda", 1)
    monkeypatch.delenv("EZPZ_DEVICE_VAR")
    set_device(torch, "cuda", 3)
    assert picked == [0, 1]
