"""Conformance: every registered scheduler adapter keeps the contract of ``ezpz.schedulers.base``.

One parametrized test per rule over ``ezpz.plugins.manager.schedulers()``, so
a plugin adapter is held to the same rules as the built-ins.  PBS and Slurm
are mocked through their environments (no PBS server or Slurm job here).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from ezpz.errors import SchedulerError, SpecError
from ezpz.model.allocation import Allocation
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec
from ezpz.plugins.manager import schedulers
from ezpz.schedulers.base import Scheduler
from ezpz.schedulers.dialects import DIALECTS

ADAPTERS = schedulers()
NAMES = sorted(ADAPTERS)
COMMAND = ["python3", "train.py", "--lr", "0.1"]


def _environs(tmp: Path) -> list[dict[str, str]]:
    """Candidate environments: nothing, a PBS job, a Slurm job."""
    nodefile = tmp / "nodefile"
    nodefile.write_text("x4000c0s0b0n0\nx4000c0s1b0n0\n")
    return [
        {},
        {"PBS_JOBID": "8123456.aurora-pbs-0001", "PBS_NODEFILE": str(nodefile)},
        {"SLURM_JOB_ID": "31415926", "SLURM_JOB_NODELIST": "nid[001234-001235]", "SLURM_NNODES": "2"},
    ]


def _home(adapter: Scheduler, tmp: Path) -> Mapping[str, str]:
    """The candidate environment where ``adapter`` scores highest."""
    return max(_environs(tmp), key=adapter.affinity)


def _allocation(adapter: Scheduler, tmp: Path) -> Allocation:
    return adapter.allocation(_home(adapter, tmp))


def test_builtins_registered() -> None:
    assert {"pbs", "slurm", "local"} <= set(ADAPTERS)


@pytest.mark.parametrize("name", NAMES)
def test_identity(name: str) -> None:
    adapter = ADAPTERS[name]
    assert isinstance(adapter, Scheduler)
    assert adapter.name == name
    assert adapter.default_launcher in DIALECTS
    assert (type(adapter).__doc__ or "").strip(), "adapters document themselves"


@pytest.mark.parametrize("name", NAMES)
def test_affinity_is_an_int_in_range(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    for environ in _environs(tmp_path):
        score = adapter.affinity(environ)
        assert type(score) is int, f"{name}.affinity returned {score!r}"
        assert -1 <= score <= 2


@pytest.mark.parametrize("name", NAMES)
def test_affinity_reads_only_the_given_environ(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = ADAPTERS[name]
    empty = adapter.affinity({})
    for environ in _environs(tmp_path):
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
    assert adapter.affinity({}) == empty


def test_pbs_and_slurm_detected_only_in_their_jobs(tmp_path: Path) -> None:
    none, pbs, slurm = _environs(tmp_path)
    assert ADAPTERS["pbs"].affinity(pbs) == 2
    assert ADAPTERS["slurm"].affinity(slurm) == 2
    assert ADAPTERS["pbs"].affinity(slurm) == -1
    assert ADAPTERS["slurm"].affinity(pbs) == -1
    assert ADAPTERS["slurm"].affinity({"SLURM_NNODES": "4"}) == -1
    assert max(a.affinity(none) for a in ADAPTERS.values()) == 0


@pytest.mark.parametrize("name", NAMES)
def test_allocation_returns_hosts(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    alloc = _allocation(adapter, tmp_path)
    assert isinstance(alloc, Allocation)
    assert alloc.scheduler == name
    assert alloc.hosts and all(isinstance(h, str) and h for h in alloc.hosts)
    assert len(set(alloc.hosts)) == len(alloc.hosts), "hosts are unique"
    assert alloc.slots is None or len(alloc.slots) == len(alloc.hosts)
    assert alloc.source


@pytest.mark.parametrize("name", [n for n in NAMES if n != "local"])
def test_allocation_outside_its_job_is_a_scheduler_error(name: str) -> None:
    with pytest.raises(SchedulerError) as info:
        ADAPTERS[name].allocation({})
    assert info.value.hint


def _spec(**fields: object) -> LaunchSpec:
    return LaunchSpec(command=COMMAND, master_port=29500, **fields)


@pytest.mark.parametrize("launcher", sorted(DIALECTS))
@pytest.mark.parametrize("name", NAMES)
def test_render_is_deterministic_and_pure(name: str, launcher: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    alloc = _allocation(adapter, tmp_path)
    spec = _spec(launcher=launcher)
    before = dataclasses.replace(alloc)
    listing = sorted(os.listdir(tmp_path))
    first, second = adapter.render(spec, alloc), adapter.render(spec, alloc)
    assert isinstance(first, Plan)
    assert first == second
    assert str(first) == str(second)
    assert first.to_json() == second.to_json()
    assert alloc == before, "render must not change the allocation"
    assert sorted(os.listdir(tmp_path)) == listing, "render must not write files"
    assert first.scheduler == name
    assert first.launcher == launcher


@pytest.mark.parametrize("launcher", sorted(DIALECTS))
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rank_env", [True, False])
def test_argv_ends_with_the_command(name: str, launcher: str, rank_env: bool, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    alloc = _allocation(adapter, tmp_path)
    plan = adapter.render(_spec(launcher=launcher, rank_env=rank_env), alloc)
    assert list(plan.argv[-len(COMMAND) :]) == COMMAND
    if rank_env:
        # The per-rank shell shim, and the launcher's own per-line rank labels for the reader.
        assert list(plan.argv[-len(COMMAND) - 2 : -len(COMMAND)]) == ["sh", alloc.shim]
        assert plan.supervise
        labels = list(DIALECTS[launcher].labels)
        assert any(plan.argv[i : i + len(labels)] == tuple(labels) for i in range(len(plan.argv)))
    else:
        assert alloc.shim not in plan.argv and not plan.supervise
    assert plan.argv[0] in {"mpiexec", "mpirun", "srun"}


@pytest.mark.parametrize("name", NAMES)
def test_plan_counts_are_consistent(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    alloc = _allocation(adapter, tmp_path)
    plan = adapter.render(_spec(), alloc)
    assert plan.np == plan.nhosts * plan.ppn
    assert plan.hosts == alloc.hosts[: plan.nhosts]
    assert plan.env["MASTER_ADDR"] == plan.hosts[0]
    assert plan.env["MASTER_PORT"] == "29500"


@pytest.mark.parametrize("name", NAMES)
def test_render_without_command_is_a_spec_error(name: str, tmp_path: Path) -> None:
    adapter = ADAPTERS[name]
    with pytest.raises(SpecError) as info:
        adapter.render(LaunchSpec(master_port=29500), _allocation(adapter, tmp_path))
    assert "command" in info.value.what and info.value.hint
