"""Device masks per rank (``--device-mask``): the map, the rank shim's export, setup_torch's pick.

This machine has no GPU, so the accelerator counts are fake
(``EZPZ_ACCELERATORS_PER_NODE``) and nothing here checks that a driver obeys
the mask: the real launches check that the real rank shim, under real MPICH
ranks on two fake hosts, gives every rank its own entry and each host's
ranks cover that host's devices exactly once.  The NVIDIA case on real GPUs
is :func:`test_cuda_ranks_see_distinct_gpus`, marked ``gpu``: it needs a
machine with NVIDIA GPUs and skips elsewhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ezpz.errors import DistError, SpecError
from ezpz.ranks import device_env
from ezpz.schedulers.devices import DEVICE_MASKS, device_map, device_plan_env

EZPZ = [sys.executable, "-m", "ezpz"]


def _items(entries: tuple[str, ...]) -> list[str]:
    return [item for entry in entries for item in entry.split(",")]


@pytest.mark.parametrize(
    ("kind", "ppn", "accelerators", "var", "entries"),
    [
        ("cuda", 4, 4, "CUDA_VISIBLE_DEVICES", ("0", "1", "2", "3")),
        ("rocr", 8, 8, "ROCR_VISIBLE_DEVICES", ("0", "1", "2", "3", "4", "5", "6", "7")),
        ("ze", 6, 6, "ZE_AFFINITY_MASK", ("0", "1", "2", "3", "4", "5")),
        ("ze-tile", 12, 12, "ZE_AFFINITY_MASK", tuple(f"{g}.{t}" for g in range(6) for t in range(2))),
        # Fewer ranks than devices: equal blocks (Aurora -ppn 6: one whole GPU each).
        ("ze-tile", 6, 12, "ZE_AFFINITY_MASK", tuple(f"{g}.0,{g}.1" for g in range(6))),
        ("cuda", 2, 4, "CUDA_VISIBLE_DEVICES", ("0,1", "2,3")),
        ("cuda", 3, 4, "CUDA_VISIBLE_DEVICES", ("0", "1", "2")),
        # More ranks than devices (--oversubscribe): neighbours share.
        ("cuda", 8, 4, "CUDA_VISIBLE_DEVICES", ("0", "0", "1", "1", "2", "2", "3", "3")),
    ],
)
def test_device_map(kind, ppn, accelerators, var, entries):
    assert device_map(kind, ppn, accelerators) == (var, entries)


@given(
    kind=st.sampled_from(sorted(DEVICE_MASKS)),
    gpus=st.integers(1, 32),
    ppn=st.integers(1, 96),
)
def test_blocks_are_disjoint_equal_and_cover_the_node_when_ppn_is_the_device_count(kind, gpus, ppn):
    accelerators = gpus * 2 if kind == "ze-tile" else gpus
    _, entries = device_map(kind, ppn, accelerators)
    assert len(entries) == ppn
    items = _items(entries)
    if ppn <= accelerators:
        assert len(set(items)) == len(items)
        assert {len(e.split(",")) for e in entries} == {accelerators // ppn}
    else:
        assert len(set(items)) == accelerators
    if ppn == accelerators:
        assert len(items) == accelerators


def test_unknown_accelerators_and_bad_kinds_are_spec_errors():
    with pytest.raises(SpecError, match="accelerator count, and it is unknown"):
        device_map("cuda", 4, 0)
    with pytest.raises(SpecError, match="whole GPUs of 2 tiles"):
        device_map("ze-tile", 3, 3)
    with pytest.raises(SpecError, match="unknown device mask"):
        device_map("nvidia", 1, 1)


def test_plan_env_stands_down_for_the_users_variable_and_without_the_shim():
    kw = {"ppn": 2, "accelerators": 2, "rank_env": True, "source": "flags"}
    assert device_plan_env("cuda", env={}, **kw) == (
        {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "0 1"},
        "flags",
    )
    assert device_plan_env("cuda", env={"CUDA_VISIBLE_DEVICES": "1"}, **kw)[0] == {}
    assert device_plan_env("none", env={}, **kw) == ({}, "flags")
    off = {**kw, "rank_env": False, "source": "template:aurora"}
    assert device_plan_env("ze-tile", env={}, **off) == ({}, "template:aurora; off: --no-rank-env")
    with pytest.raises(SpecError, match="--no-rank-env"):
        device_plan_env("cuda", env={}, **{**kw, "rank_env": False})


def test_rank_shim_entry_and_mapping_through_the_jobs_devices():
    plan = {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "0 1 2 3"}
    assert device_env(plan, 2) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert device_env({}, 0) == {}
    # Slurm (or the user) already narrowed the node to these GPUs: entries count within them.
    assert device_env({**plan, "CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 1) == {"CUDA_VISIBLE_DEVICES": "5"}
    tiles = {"EZPZ_DEVICE_VAR": "ZE_AFFINITY_MASK", "EZPZ_DEVICE_MAP": "0.0 0.1 1.0 1.1"}
    assert device_env({**tiles, "ZE_AFFINITY_MASK": "3,5"}, 3) == {"ZE_AFFINITY_MASK": "5.1"}
    with pytest.raises(DistError, match="fewer than the device mask needs"):
        device_env({**plan, "CUDA_VISIBLE_DEVICES": "0,1"}, 3)
    with pytest.raises(DistError, match="no entry in the device mask"):
        device_env(plan, 4)


# ------------------------------------------------------------------ real ranks

SHOW = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('RANK', 'LOCAL_RANK', '{var}')}))"


def _launch(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*EZPZ, "launch", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


@pytest.mark.parametrize(
    ("kind", "devices"),
    [("cuda", 4), ("rocr", 8), ("ze", 6), ("ze-tile", 12)],
)
def test_two_hosts_of_ranks_cover_each_nodes_devices_once(tmp_path, kind, devices):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\n")
    var = DEVICE_MASKS[kind]
    done = _launch(
        "--hostfile",
        str(hostfile),
        "-nh",
        "2",
        "-ppn",
        str(devices),
        "-launcher",
        "fork",
        "--device-mask",
        kind,
        "--",
        sys.executable,
        "-c",
        SHOW.replace("{var}", var),
        env={"EZPZ_ACCELERATORS_PER_NODE": str(devices)},
    )
    assert done.returncode == 0, done.stderr
    ranks = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", done.stdout)]
    assert sorted(int(r["RANK"]) for r in ranks) == list(range(2 * devices))
    by_host: dict[int, list[str]] = defaultdict(list)
    for r in ranks:
        by_host[int(r["RANK"]) // devices].append(r[var])
        # Each rank's mask is its local rank's entry.
        assert r[var] == device_map(kind, devices, devices)[1][int(r["LOCAL_RANK"])]
    expected = sorted(_items(device_map(kind, devices, devices)[1]))
    assert {h: sorted(masks) for h, masks in by_host.items()} == {0: expected, 1: expected}
    assert len(expected) == devices


def test_ranks_pick_within_devices_the_job_already_narrowed():
    done = _launch(
        "-n",
        "2",
        "--device-mask",
        "cuda",
        "--",
        sys.executable,
        "-c",
        SHOW.replace("{var}", "CUDA_VISIBLE_DEVICES"),
        env={"EZPZ_ACCELERATORS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "6,7"},
    )
    assert done.returncode == 0, done.stderr
    ranks = sorted((json.loads(m) for m in re.findall(r"\{[^{}]*\}", done.stdout)), key=lambda r: r["RANK"])
    assert [r["CUDA_VISIBLE_DEVICES"] for r in ranks] == ["6", "7"]


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--device-mask", "cuda"],
            {"EZPZ_ACCELERATORS_PER_NODE": "0"},
            "error: a device mask needs the node's accelerator count, and it is unknown here (given '--device-mask cuda'); ",
        ),
        (["--device-mask", "nvidia"], {}, "error: invalid device_mask (from flags): Input should be 'none', 'cuda',"),
        (
            ["--device-mask", "cuda", "--no-rank-env"],
            {"EZPZ_ACCELERATORS_PER_NODE": "4"},
            "error: a device mask is set per rank by the rank shim, which --no-rank-env turns off",
        ),
    ],
)
def test_bad_device_mask_input_is_one_line_exit_2(args, env, line):
    done = _launch("-n", "1", *args, "--dry-run", "--", "true", env=env, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(line)


@pytest.mark.gpu
def test_cuda_ranks_see_distinct_gpus():
    """Needs hardware: NVIDIA GPUs and a CUDA torch build (none here, so it skips in CI; run it on a GPU node)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs NVIDIA GPUs")
    count = torch.cuda.device_count()
    code = (
        "import json, os, ezpz, torch; ezpz.setup_torch();"
        "print(json.dumps({'LOCAL_RANK': os.environ['LOCAL_RANK'], 'mask': os.environ['CUDA_VISIBLE_DEVICES'],"
        "'seen': torch.cuda.device_count(), 'current': torch.cuda.current_device(),"
        "'uuid': str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)}))"
    )
    done = _launch("-n", str(count), "--device-mask", "cuda", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    ranks = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", done.stdout)]
    assert len(ranks) == count
    assert all(r["mask"] == r["LOCAL_RANK"] for r in ranks)
    assert {(r["seen"], r["current"]) for r in ranks} == {(1, 0)}
    assert len({r["uuid"] for r in ranks}) == count


def test_no_mask_without_both_the_variable_and_the_map():
    assert device_env({"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES"}, 0) == {}
    assert device_env({"EZPZ_DEVICE_MAP": "0 1"}, 0) == {}
    assert device_env({"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "  "}, 0) == {}


def test_a_multi_device_entry_maps_each_device_through_the_jobs_list():
    plan = {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "0,1 2,3"}
    assert device_env({**plan, "CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 1) == {"CUDA_VISIBLE_DEVICES": "6,7"}
    assert device_env({**plan, "CUDA_VISIBLE_DEVICES": " , 4,5,6,7"}, 0) == {"CUDA_VISIBLE_DEVICES": "4,5"}
    tiles = {"EZPZ_DEVICE_VAR": "ZE_AFFINITY_MASK", "EZPZ_DEVICE_MAP": "0.1 1.1"}
    assert device_env({**tiles, "ZE_AFFINITY_MASK": "2,3"}, 1) == {"ZE_AFFINITY_MASK": "3.1"}


@pytest.mark.parametrize(
    ("environ", "local_rank", "line"),
    [
        (
            {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "0 1", "CUDA_VISIBLE_DEVICES": "4,5"},
            2,
            "local rank has no entry in the device mask (given 'local_rank=2 EZPZ_DEVICE_MAP=0 1'); "
            "the launcher put more ranks on this node than planned; check -ppn",
        ),
        (
            {"EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES", "EZPZ_DEVICE_MAP": "0,1 2,3", "CUDA_VISIBLE_DEVICES": "4,5,6"},
            1,
            "CUDA_VISIBLE_DEVICES lists 3 devices, fewer than the device mask needs "
            "(given 'CUDA_VISIBLE_DEVICES=4,5,6 mask entry 3'); "
            "give the job every device of the node, or unset CUDA_VISIBLE_DEVICES",
        ),
        (
            {"EZPZ_DEVICE_VAR": "X", "EZPZ_DEVICE_MAP": "a", "X": "2"},
            0,
            "X lists 1 device, fewer than the device mask needs (given 'X=2 mask entry a'); "
            "give the job every device of the node, or unset X",
        ),
        (
            {"EZPZ_DEVICE_VAR": "ZE_AFFINITY_MASK", "EZPZ_DEVICE_MAP": "0.0 0.1", "ZE_AFFINITY_MASK": "1.0,1.1"},
            1,
            "ZE_AFFINITY_MASK already names tiles (given 'ZE_AFFINITY_MASK=1.0,1.1'); use --device-mask ze",
        ),
    ],
)
def test_device_mask_errors_in_full(environ: dict[str, str], local_rank: int, line: str) -> None:
    with pytest.raises(DistError) as info:
        device_env(environ, local_rank)
    assert info.value.line() == line
