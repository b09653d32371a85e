"""Placement rules of issue #14: fill accelerators first, and short PALS cpu lists.

Allocations here are explicit values (a PBS or Slurm job's hosts, mocked:
there is no PBS server and no GPU on this machine); the rules are pure.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ezpz import LaunchSpec
from ezpz.errors import SpecError
from ezpz.launch import describe
from ezpz.schedulers.base import Allocation, cpu_bind_note, cut_cpu_bind, pack_accelerators_first
from ezpz.schedulers.pbs import PBS

CMD = ["python3", "train.py"]


def gpu_job(hosts: int = 2, accelerators: int = 4) -> Allocation:
    """A PBS job of ``hosts`` nodes with ``accelerators`` GPUs each (mocked: no GPUs here)."""
    names = tuple(f"gpu{i:02d}" for i in range(hosts))
    return Allocation(
        scheduler="pbs", hosts=names, job_id="1.pbs", hostfile="/pbs/nodefile", accelerators=accelerators, source="PBS"
    )


def counts(alloc: Allocation, **fields: object) -> tuple[int, int, int]:
    plan = PBS().render(LaunchSpec(command=CMD, master_port=29500, launcher="pals", **fields), alloc)  # type: ignore[arg-type]
    return plan.np, plan.ppn, plan.nhosts


@pytest.mark.parametrize(("np", "want"), [(1, (1, 1, 1)), (4, (4, 4, 1)), (6, (6, 3, 2)), (8, (8, 4, 2))])
def test_only_np_fills_accelerators_first(np: int, want: tuple[int, int, int]) -> None:
    assert counts(gpu_job(), np=np) == want


def test_np_that_does_not_pack_lists_the_valid_choices() -> None:
    with pytest.raises(SpecError) as info:
        counts(gpu_job(), np=5)
    line = info.value.line()
    assert "np=5" in line and "-n 5" in line
    assert "valid: -n 4 (1 host × 4), -n 6 (2 hosts × 3)" in line


def test_np_beyond_the_jobs_accelerators_needs_oversubscribe() -> None:
    with pytest.raises(SpecError) as info:
        counts(gpu_job(), np=12)
    assert "needs 3 hosts" in info.value.line() and "--oversubscribe" in info.value.line()
    # With --oversubscribe the ranks are spread over every host, as before.
    assert counts(gpu_job(), np=12, oversubscribe=True) == (12, 6, 2)


def test_an_exact_layout_on_more_hosts_is_offered() -> None:
    """-n 10 at 4 per node needs 3 hosts (not even); 5 hosts × 2 holds it exactly."""
    with pytest.raises(SpecError) as info:
        pack_accelerators_first(10, 4, 5)
    assert "-nh 5 -ppn 2" in info.value.line()


def test_cpu_only_nodes_keep_spreading() -> None:
    assert counts(gpu_job(accelerators=0), np=4) == (4, 2, 2)
    assert counts(gpu_job(accelerators=0), np=1) == (1, 1, 1)


def test_explicit_counts_are_not_repacked() -> None:
    assert counts(gpu_job(), np=4, nhosts=2) == (4, 2, 2)
    assert counts(gpu_job(), np=4, ppn=2) == (4, 2, 2)


def test_dry_run_names_the_packing_rule() -> None:
    plan = PBS().render(LaunchSpec(command=CMD, master_port=29500, np=6), gpu_job())
    assert plan.provenance["nhosts"] == "fill accelerators first: ceil(np / 4 accelerators per node)"
    assert "fill accelerators first" in describe(plan)


@given(np=st.integers(1, 200), accelerators=st.integers(1, 16), hosts=st.integers(1, 16))
def test_packing_rule_model(np: int, accelerators: int, hosts: int) -> None:
    """Either the fewest hosts, evenly, within the accelerators; or an error whose choices all pack."""
    need = -(-np // accelerators)
    try:
        nhosts, ppn = pack_accelerators_first(np, accelerators, hosts)
    except SpecError as exc:
        assert need > hosts or np % need
        choices = [int(n) for n in re.findall(r"-n (\d+) \(", exc.line())]
        assert choices or "-nh " in exc.line()
        for n in choices:
            got = pack_accelerators_first(n, accelerators, hosts)
            assert got[0] * got[1] == n
        return
    assert (nhosts, nhosts * ppn) == (need, np)
    assert ppn <= accelerators and nhosts <= hosts


AURORA_CPUS = "list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100"


def test_short_cpu_list_is_passed_as_given_and_the_dry_run_says_so() -> None:
    short = "list:1-8:9-16:17-24:25-32:33-40:41-48"
    assert cut_cpu_bind(short, 12) == short
    plan = PBS().render(
        LaunchSpec(command=CMD, master_port=29500, accelerators_per_node=12, cpu_bind=short), gpu_job(2, 12)
    )
    assert f"--cpu-bind={short}" in plan.argv
    assert "6 entries for ppn=12: passed as given" in describe(plan)


def test_long_cpu_list_is_cut_and_the_dry_run_says_so() -> None:
    assert cut_cpu_bind(AURORA_CPUS, 6) == "list:1-8:9-16:17-24:25-32:33-40:41-48"
    assert cpu_bind_note(AURORA_CPUS, 6) == "list of 12 entries cut to ppn=6"
    assert cpu_bind_note(AURORA_CPUS, 12) is None
    assert cpu_bind_note("depth", 3) is None
