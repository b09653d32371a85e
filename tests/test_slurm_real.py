"""The Slurm path against a real slurmctld + two slurmd on this machine.

Nothing here is mocked: the node lists are checked against real
``scontrol show hostnames``, and ranks are started by real ``salloc``/``srun``
on the fake nodes ``n1`` and ``n2`` of ``scripts/slurm-cluster.sh``.  Without
the cluster these tests skip locally and fail in CI (``$CI`` set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import hostlist
import pytest
import slurm

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    """Require the two-node cluster (skip locally, fail in CI)."""
    slurm.require_cluster()


# Node lists in the forms Slurm writes into SLURM_JOB_NODELIST, and that
# `scontrol show hostnames` accepts.
NODELISTS = [
    "n[1-2]",  # what salloc on this cluster writes
    "login01",  # a single host
    "nid001234,nid001300",  # a comma list (the reference counted this as one node)
    "nid[001234-001237,001300]",  # ranges and singles in one bracket group, zero padded
    "nid[001234-001235],login01,gpu[7-8]",  # several bracket groups and plain names
    "x1000c0s0b0n[0-1],x1000c0s1b0n[0-1]",  # how Slurm compresses Aurora-style names
    "nid[9-10,011]",  # mixed padding in one group
    "nid[099-101]",  # padded range crossing a power of ten
    "x1000c0s[0-1]b0n[0-1]",  # two bracket groups in one name (a product)
]


@pytest.mark.parametrize("nodelist", NODELISTS)
def test_hostlist_library_matches_scontrol(nodelist: str) -> None:
    assert hostlist.expand_hostlist(nodelist) == slurm.scontrol_hostnames(nodelist)


@pytest.mark.parametrize("nodelist", NODELISTS)
def test_ezpz_nodelist_matches_scontrol(nodelist: str) -> None:
    from ezpz.schedulers.hosts import expand_nodelist

    assert list(expand_nodelist(nodelist)) == slurm.scontrol_hostnames(nodelist)


@pytest.mark.parametrize(
    "hosts",
    [
        ["x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0", "gpu7"],
        ["nid001234", "nid001235", "nid001236", "nid001237", "nid001300"],
        ["n1", "n2", "m08", "m09", "m10", "login01"],
        ["nid9", "nid10", "nid011"],
    ],
)
def test_what_slurm_writes_expands_back(hosts: list[str]) -> None:
    written = slurm.scontrol_hostlist(hosts)
    assert hostlist.expand_hostlist(written) == hosts
    assert slurm.scontrol_hostnames(written) == hosts


def test_suffix_after_bracket_is_not_slurm_but_still_read() -> None:
    # sites.md quotes `x1000c0s[0-3]b0n0,gpu7`; Slurm 22.05 rejects a suffix after a
    # bracket group ("Invalid hostlist") and writes those names uncompressed (see the
    # round-trip test above).  The library still reads the quoted form correctly.
    quoted = "x1000c0s[0-3]b0n0,gpu7"
    expanded = ["x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0", "gpu7"]
    assert hostlist.expand_hostlist(quoted) == expanded
    rejected = subprocess.run(["scontrol", "show", "hostnames", quoted], capture_output=True, text=True, timeout=10)
    assert rejected.stdout == "" and "Invalid hostlist" in rejected.stderr


def test_real_allocation_nodelist() -> None:
    out = slurm.in_allocation(["sh", "-c", 'echo "$SLURM_JOB_NODELIST"; scontrol show hostnames'], limit_s=30)
    assert out.returncode == 0, out.stderr
    nodelist, *shown = out.stdout.split()
    assert hostlist.expand_hostlist(nodelist) == shown == ["n1", "n2"]


def test_srun_two_per_node() -> None:
    out = slurm.in_allocation(
        ["srun", "sh", "-c", 'echo "$SLURM_PROCID $SLURM_NODEID $SLURMD_NODENAME $SLURM_LOCALID"']
    )
    assert out.returncode == 0, out.stderr
    rows = sorted(tuple(line.split()) for line in out.stdout.splitlines())
    assert rows == [
        ("0", "0", "n1", "0"),
        ("1", "0", "n1", "1"),
        ("2", "1", "n2", "0"),
        ("3", "1", "n2", "1"),
    ]


def test_mpich_hydra_inside_salloc() -> None:
    # Hydra detects the allocation and starts one proxy per node through srun.
    mpiexec = str(slurm.VENV_BIN / "mpiexec")
    keys = ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "SLURMD_NODENAME")
    code = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"
    out = slurm.in_allocation([mpiexec, "-n", "4", "-ppn", "2", slurm.PYTHON, "-c", code])
    assert out.returncode == 0, out.stderr
    rows = sorted(
        (r["PMI_RANK"], r["PMI_SIZE"], r["MPI_LOCALRANKID"], r["SLURMD_NODENAME"])
        for r in slurm.json_objects(out.stdout)
    )
    assert rows == [
        ("0", "4", "0", "n1"),
        ("1", "4", "1", "n1"),
        ("2", "4", "0", "n2"),
        ("3", "4", "1", "n2"),
    ]


def test_srun_pmi2_with_mpich_wheel() -> None:
    code = (
        "from mpi4py import MPI; import json, os; c = MPI.COMM_WORLD; "
        "print(json.dumps({'r': c.rank, 'n': c.size, 'node': os.environ['SLURM_NODEID'],"
        " 'sum': c.allreduce(c.rank + 1)}))"
    )
    out = slurm.in_allocation(["srun", "--mpi=pmi2", slurm.PYTHON, "-c", code])
    assert out.returncode == 0, out.stderr
    rows = sorted((r["r"], r["n"], r["node"], r["sum"]) for r in slurm.json_objects(out.stdout))
    assert rows == [(0, 4, "0", 10), (1, 4, "0", 10), (2, 4, "1", 10), (3, 4, "1", 10)]


@pytest.mark.skipif(os.geteuid() != 0, reason="scripts/slurm-cluster.sh needs root")
def test_cluster_up_is_idempotent() -> None:
    script = slurm.REPO / "scripts" / "slurm-cluster.sh"
    before = subprocess.run([script, "status"], capture_output=True, text=True, timeout=30)
    t0 = time.monotonic()
    up = subprocess.run([script, "up"], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    after = subprocess.run([script, "status"], capture_output=True, text=True, timeout=30)
    assert up.returncode == 0, up.stderr
    assert before.returncode == after.returncode == 0
    assert after.stdout == before.stdout  # same daemons, same pids
    assert took < 5


# --- `ezpz launch` inside an allocation (the must-hold list) ---------


def _launch(*args: str) -> list[str]:
    return [slurm.PYTHON, "-m", "ezpz", "launch", *args]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.py"
    path.write_text(slurm.PAYLOAD)
    return path


@pytest.mark.torch
def test_launch_fills_the_allocation(payload: Path) -> None:
    out = slurm.in_allocation(_launch("--", slurm.PYTHON, str(payload), "--allreduce"), limit_s=90)
    assert out.returncode == 0, out.stderr
    rows = sorted(slurm.json_objects(out.stdout), key=lambda r: int(r["RANK"]))
    assert [r["SLURM_NODEID"] for r in rows] == ["0", "0", "1", "1"]
    assert [r["SLURMD_NODENAME"] for r in rows] == ["n1", "n1", "n2", "n2"]
    assert [r["RANK"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["LOCAL_RANK"] for r in rows] == ["0", "1", "0", "1"]
    assert {r["WORLD_SIZE"] for r in rows} == {"4"}
    assert {r["MASTER_ADDR"] for r in rows} == {"n1"}  # the allocation's first host
    assert all(r["MASTER_PORT"] for r in rows)
    assert [r["sum"] for r in rows] == [10.0] * 4  # 1 + 2 + 3 + 4


def test_launch_first_node_only(payload: Path) -> None:
    out = slurm.in_allocation(_launch("-nh", "1", "--", slurm.PYTHON, str(payload)))
    assert out.returncode == 0, out.stderr
    rows = sorted(slurm.json_objects(out.stdout), key=lambda r: int(r["RANK"]))
    assert [(r["RANK"], r["LOCAL_RANK"], r["SLURMD_NODENAME"]) for r in rows] == [
        ("0", "0", "n1"),
        ("1", "1", "n1"),
    ]
    assert {r["WORLD_SIZE"] for r in rows} == {"2"}
    assert {r["SLURM_NODEID"] for r in rows} == {"0"}


def test_launch_exclude_hosts_runs_only_on_the_kept_node(payload: Path) -> None:
    """Issue #14: --exclude-hosts n1 in a real 2-node allocation: every rank on n2, which is MASTER_ADDR too."""
    out = slurm.in_allocation(_launch("--exclude-hosts", "n1", "--", slurm.PYTHON, str(payload)))
    assert out.returncode == 0, out.stderr
    rows = sorted(slurm.json_objects(out.stdout), key=lambda r: int(r["RANK"]))
    assert [(r["RANK"], r["LOCAL_RANK"], r["SLURMD_NODENAME"]) for r in rows] == [
        ("0", "0", "n2"),
        ("1", "1", "n2"),
    ]
    assert {r["WORLD_SIZE"] for r in rows} == {"2"}
    assert {r["MASTER_ADDR"] for r in rows} == {"n2"}


def test_hydra_in_an_allocation_places_ppn_per_node(payload: Path) -> None:
    """``--launcher hydra -ppn 1`` on 2 nodes: one rank on each (without -ppn hydra filled n1 first)."""
    out = slurm.in_allocation(_launch("--launcher", "hydra", "-ppn", "1", "--", slurm.PYTHON, str(payload)))
    assert out.returncode == 0, out.stderr
    rows = sorted(slurm.json_objects(out.stdout), key=lambda r: int(r["RANK"]))
    assert [(r["RANK"], r["SLURMD_NODENAME"]) for r in rows] == [("0", "n1"), ("1", "n2")]


@pytest.mark.parametrize(("flags", "word"), [(("-nh", "3"), "3"), (("-n", "8"), "8")], ids=["nodes", "ranks"])
def test_launch_more_than_allocated_is_one_line(tmp_path: Path, flags: tuple[str, ...], word: str) -> None:
    marker = tmp_path / "started"
    command = [slurm.PYTHON, "-c", f"open({str(marker)!r}, 'w')"]
    out = slurm.in_allocation(_launch(*flags, "--", *command), limit_s=30)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    errors = [line for line in lines if not line.startswith("salloc:")]
    assert len(errors) == 1 and errors[0].startswith("error:") and word in errors[0], out.stderr
    assert not marker.exists()  # nothing started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_launch_leaves_no_task(tmp_path: Path, sig: signal.Signals) -> None:
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(slurm.SLEEPER)
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    ids = tmp_path / "ids"
    # `exec` keeps the shell's pid for `ezpz launch`, and SIGINT stays deliverable
    # (a backgrounded job in a non-interactive shell would ignore it).
    inner = f'echo "$$ $SLURM_JOB_ID" > {ids}; exec "$@"'
    argv = [
        *slurm.salloc_argv(limit_s=90),
        "sh",
        "-c",
        inner,
        "sh",
        *_launch("--", slurm.PYTHON, str(sleeper), str(ranks)),
    ]
    log = (tmp_path / "salloc.log").open("w")
    proc = subprocess.Popen(
        argv,
        cwd=slurm.REPO,
        env=slurm.slurm_env(),
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        slurm.wait_for(lambda: len(list(ranks.iterdir())) == 4, 30, "4 ranks to start")
        launch_pid, job_id = (int(word) for word in ids.read_text().split())
        rank_pids = [int(p.name.split("-")[1]) for p in ranks.iterdir()]
        assert slurm.job_steps(str(job_id)), "no running step seen before the signal"
        os.kill(launch_pid, sig)
        slurm.wait_for(lambda: not slurm.pid_alive(launch_pid), 15, "ezpz launch to exit")
        # When `ezpz launch` has returned, its tasks must be gone as well, not left for
        # Slurm to reap later: an orphaned step is ended only after Slurm notices and then
        # waits KillWait (5 s in scripts/slurm-cluster.sh).  5 s lets squeue catch up on a
        # loaded machine (1.5 s flaked) and is still no longer than KillWait alone.
        slurm.wait_for(lambda: not slurm.job_steps(str(job_id)), 5, "steps to leave squeue")
        slurm.wait_for(lambda: not any(map(slurm.pid_alive, rank_pids)), 5, "ranks to exit")
        assert proc.wait(timeout=15) == 128 + sig  # salloc passes on launch's status
    finally:
        slurm.kill_group(proc)
        log.close()
