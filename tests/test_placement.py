"""Placement rules of issue #14: fill accelerators first, short PALS cpu lists, hosts left out, failover.

Allocations here are explicit values (a PBS or Slurm job's hosts, mocked:
there is no PBS server and no GPU on this machine); the rules are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ezpz import LaunchSpec
from ezpz.cli import main
from ezpz.errors import LaunchError, SchedulerError, SpecError
from ezpz.launch.resolve import describe, plan_launch
from ezpz.model.allocation import Allocation
from ezpz.schedulers.counting import cpu_bind_note, cut_cpu_bind, pack_accelerators_first
from ezpz.schedulers.hosts import parse_host_set, read_host_set
from ezpz.schedulers.pbs import PBS
from ezpz.schedulers.placement import fail_over, host_to_drop, replace_host, select_hosts

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


# --- leaving hosts out: --exclude-hosts, --include-hosts, --spare-nodes --------


def job(*hosts: str, slots: tuple[int, ...] | None = None) -> Allocation:
    """A PBS job's allocation from its nodefile (mocked: no PBS server here)."""
    return Allocation(scheduler="pbs", hosts=hosts, job_id="1.pbs", hostfile="/pbs/nodefile", slots=slots, source="PBS")


def test_exclude_include_and_spares_leave_hosts_out_before_counting() -> None:
    chosen = select_hosts(job("a1", "a2", "a3", "a4", "a5"), exclude={"a2"}, spares=1).allocation
    assert chosen.hosts == ("a1", "a3", "a4")
    assert chosen.spares == ("a5",)
    assert chosen.left_out == (("a2", "excluded (--exclude-hosts)"), ("a5", "spare (--spare-nodes 1)"))
    plan = PBS().render(LaunchSpec(command=CMD, master_port=1, ppn=2, spare_nodes=1), chosen)
    # Counting sees the 3 usable hosts only, and the nodefile is replaced by a subset hostfile.
    assert (plan.np, plan.nhosts, plan.hosts) == (6, 3, ("a1", "a3", "a4"))
    assert plan.files[0][1] == "a1\na3\na4\n"
    assert "--hostfile=/pbs/nodefile" not in plan.argv
    text = describe(plan)
    assert "a2   [excluded (--exclude-hosts)]" in text and "a5   [spare (--spare-nodes 1)]" in text
    assert plan.to_dict()["left_out"] == {"a2": "excluded (--exclude-hosts)", "a5": "spare (--spare-nodes 1)"}


def test_include_keeps_job_order_and_slots() -> None:
    chosen = select_hosts(job("a1", "a2", "a3", slots=(1, 2, 3)), include={"a3", "a1"}).allocation
    assert (chosen.hosts, chosen.slots) == (("a1", "a3"), (1, 3))
    assert dict(chosen.left_out) == {"a2": "not in --include-hosts"}


def test_hosts_named_but_not_in_the_job_warn_per_option() -> None:
    selection = select_hosts(job("a1", "a2"), include={"a1", "zz"}, exclude={"yy"})
    assert selection.warnings == (
        "--include-hosts names hosts that are not in the job (zz); ignored",
        "--exclude-hosts names hosts that are not in the job (yy); ignored",
    )


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        (
            {"exclude": {"a1", "a2"}},
            "--exclude-hosts leaves out every host of the job (given 'a[1-2]'); "
            "the job's hosts are a[1-2] (PBS); leave at least one in",
        ),
        (
            {"include": {"b1"}},
            "no host of the job is in --include-hosts (given 'b1'); the job's hosts are a[1-2] (PBS)",
        ),
        (
            {"spares": 2},
            "no host left to run on beside the spares: the job has 2 usable hosts (given '--spare-nodes 2'); "
            "use --spare-nodes 1 or fewer",
        ),
    ],
)
def test_nothing_left_to_run_on_in_full(kwargs: dict[str, object], line: str) -> None:
    with pytest.raises(SpecError) as info:
        select_hosts(job("a1", "a2"), **kwargs)  # type: ignore[arg-type]
    assert info.value.line() == line


def test_host_not_in_the_job_warns_and_is_ignored() -> None:
    selection = select_hosts(job("a1", "a2"), exclude={"a2", "zz9"})
    assert selection.allocation.hosts == ("a1",)
    assert selection.warnings == ("--exclude-hosts names hosts that are not in the job (zz9); ignored",)


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"exclude": {"a1", "a2"}}, ("leaves out every host", "a[1-2]", "leave at least one in")),
        ({"include": {"b1"}}, ("no host of the job is in --include-hosts", "b1", "a[1-2]")),
        ({"spares": 2}, ("beside the spares", "--spare-nodes 2", "--spare-nodes 1 or fewer")),
        ({"exclude": {"a1"}, "spares": 1}, ("1 usable hosts", "--spare-nodes 0 or fewer")),
    ],
)
def test_nothing_left_to_run_on_is_one_line(kwargs: dict[str, object], parts: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as info:
        select_hosts(job("a1", "a2"), **kwargs)  # type: ignore[arg-type]
    line = info.value.line()
    assert "\n" not in line and all(part in line for part in parts), line


@pytest.mark.parametrize(
    ("flags", "part"),
    [
        (["--exclude-hosts", "x4000c0s[0-1]b0n0"], "leaves out every host"),
        (["--spare-nodes", "2"], "--spare-nodes 1 or fewer"),
        (["--include-hosts", "nid[1-2"], "cannot read the host list of --include-hosts"),
        (["--exclude-hosts", "@/nonexistent/bad-hosts"], "--exclude-hosts file not found"),
    ],
)
def test_bad_host_selection_from_the_cli_is_one_line_exit_2(
    flags: list[str], part: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PBS is faked by its environment (PBS_JOBID + a nodefile): there is no PBS server here."""
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x4000c0s0b0n0\nx4000c0s1b0n0\n")
    monkeypatch.setenv("PBS_JOBID", "1.aurora")
    monkeypatch.setenv("PBS_NODEFILE", str(nodefile))
    assert main(["launch", "-t", "aurora", *flags, "--dry-run", "--", "python3", "x.py"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and part in err[0], err


def test_exclude_hosts_on_a_pbs_nodefile_warns_for_unknown_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PBS is faked by its environment (PBS_JOBID + a nodefile): there is no PBS server here."""
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("".join(f"x4000c0s{i}b0n0\n" for i in range(4)))
    environ = {"PBS_JOBID": "1.aurora", "PBS_NODEFILE": str(nodefile), "EZPZ_MASTER_PORT": "29500"}
    layers = [("flags", {"command": CMD, "template": "aurora", "exclude_hosts": "x4000c0s[1-2]b0n0,x9999c0s0b0n0"})]
    plan = plan_launch(layers, environ)
    assert plan.hosts == ("x4000c0s0b0n0", "x4000c0s3b0n0") and (plan.np, plan.ppn) == (24, 12)
    assert "not in the job (x9999c0s0b0n0); ignored" in caplog.text
    # -nh counts usable hosts only: a third host is more than the job has left.
    with pytest.raises(SchedulerError) as info:
        plan_launch([("flags", {**layers[0][1], "nhosts": 3})], environ)
    assert "(2)" in info.value.line()


def test_host_sets_read_slurm_syntax_files_and_hostfiles(tmp_path: Path) -> None:
    listed = tmp_path / "bad"
    listed.write_text("# drained\nnid[001-002] gpu7:4\nn9 slots=2\n")
    assert read_host_set("nid[001-003],gpu7", "--exclude-hosts") == ("nid001", "nid002", "nid003", "gpu7")
    assert read_host_set(f"@{listed}", "--exclude-hosts") == ("nid001", "nid002", "gpu7", "n9")
    assert read_host_set(str(listed), "--exclude-hosts") == ("nid001", "nid002", "gpu7", "n9")


# --- node failover: which host to drop, and its spare ---------------------------


@dataclass(frozen=True)
class Failed:
    """A failure record's first failing rank (the shape of ``ezpz.supervise.Failure``)."""

    rank: int
    host: str


def test_host_to_drop_is_the_first_failing_ranks_host() -> None:
    hosts = ("x1.hsn", "x2.hsn")
    assert host_to_drop(None, hosts, 2) is None
    assert host_to_drop(Failed(3, "x2.hsn"), hosts, 2) == "x2.hsn"
    assert host_to_drop(Failed(3, "x2"), hosts, 2) == "x2.hsn"  # short name
    # A fake-host layout: every rank sees this machine's name; the plan put rank 2 on n2.
    assert host_to_drop(Failed(2, "buildbox"), ("n1", "n2"), 2) == "n2"
    assert host_to_drop(Failed(9, "buildbox"), ("n1", "n2"), 2) is None
    assert host_to_drop(Failed(0, "buildbox"), ("n1", "n2"), 2) == "n1"
    assert host_to_drop(Failed(3, "buildbox"), ("n1", "n2"), 2) == "n2"
    assert host_to_drop(Failed(4, "buildbox"), ("n1", "n2"), 2) is None  # past the last rank
    assert host_to_drop(Failed(-1, "buildbox"), ("n1", "n2"), 2) is None
    assert host_to_drop(Failed(9, "x2.hsn.site"), hosts, 2) == "x2.hsn"  # the short name is up to the first dot
    assert host_to_drop(Failed(9, "x2"), ("x1.hsn.site", "x2.hsn.site"), 2) == "x2.hsn.site"


def test_a_spare_takes_the_failed_hosts_place_until_none_is_left() -> None:
    chosen = select_hosts(job("n1", "n2", "n3", "n4", slots=(2, 2, 2, 3)), spares=2).allocation
    once = replace_host(chosen, "n2", "rank 2 exit 1")
    assert (once.hosts, once.slots, once.spares) == (("n1", "n3"), (2, 2), ("n4",))
    assert dict(once.left_out) == {"n4": "spare (--spare-nodes 2)", "n2": "failed: rank 2 exit 1"}
    twice = replace_host(once, "n1", "rank 0 signal 9")
    assert (twice.hosts, twice.slots, twice.spares) == (("n4", "n3"), (3, 2), ())
    with pytest.raises(LaunchError) as info:
        replace_host(twice, "n3", "rank 3 exit 1")
    line = info.value.line()
    assert "no spare host left to replace failed host n3" in line
    assert "n2, n1, n3" in line and "needs 2 hosts" in line and "--exclude-hosts n[1-3]" in line


def test_plan_failover_renders_the_same_ranks_on_the_spare() -> None:
    chosen = select_hosts(job("n1", "n2", "n3"), spares=1).allocation
    plan = PBS().render(LaunchSpec(command=CMD, master_port=1, ppn=2, spare_nodes=1, retries=1), chosen)
    assert plan.failover is not None
    again = plan.failover("n1", "rank 0 exit 1")
    assert (again.np, again.ppn, again.hosts) == (4, 2, ("n3", "n2"))
    assert again.env["MASTER_ADDR"] == "n3"
    assert again.files[0][1] == "n3\nn2\n"
    assert again.failover is not None
    with pytest.raises(LaunchError):
        again.failover("n2", "rank 2 exit 1")
    assert PBS().render(LaunchSpec(command=CMD, master_port=1), job("n1")).failover is None


@dataclass(frozen=True)
class Record:
    """A whole first-failure record (the shape of ``ezpz.supervise.Failure``)."""

    rank: int
    host: str
    code: int | None = 1
    signal: int | None = None


def test_fail_over_replaces_the_failing_host_or_says_retry_as_is() -> None:
    chosen = select_hosts(job("n1", "n2", "n3"), spares=1).allocation
    plan = PBS().render(LaunchSpec(command=CMD, master_port=1, ppn=2, spare_nodes=1, retries=2), chosen)
    assert fail_over(plan, None) is None  # no failure record: retry as it was
    again = fail_over(plan, Record(rank=3, host="buildbox", code=None, signal=9))
    assert again is not None
    new, dropped = again
    assert dropped == "n2" and new.hosts == ("n1", "n3")
    assert dict(new.left_out)["n2"] == "failed: rank 3 signal 9"
    with pytest.raises(LaunchError) as info:
        fail_over(new, Record(rank=0, host="n1"))
    assert "failed hosts n2, n1" in info.value.line()
    assert fail_over(plan, Record(rank=99, host="elsewhere")) is None  # no host to blame: retry as it was
    exited = fail_over(plan, Record(rank=0, host="n1", code=3))
    assert exited is not None and dict(exited[0].left_out)["n1"] == "failed: rank 0 exit 3"
    without_spares = PBS().render(LaunchSpec(command=CMD, master_port=1, retries=2), job("n1", "n2"))
    assert fail_over(without_spares, Record(rank=0, host="n1")) is None


@given(st.text(max_size=60))
def test_any_host_set_text_is_hosts_or_one_spec_error(text: str) -> None:
    """Hostile --exclude-hosts values: a tuple of host names, or one SpecError line; nothing else escapes."""
    try:
        hosts = parse_host_set(text, "--exclude-hosts")
    except SpecError as exc:
        assert "\n" not in exc.line()
        return
    assert hosts and all(host and not any(c.isspace() for c in host) for host in hosts)
