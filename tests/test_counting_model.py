"""The counting rules as a model, checked against rendering on generated cases (hypothesis).

:func:`predict` restates docs/launch.md's counting rules from scratch: given what
the user gave (np / ppn / nhosts, any subset) and what the job has (hosts,
slots, accelerators, oversubscribe, dialect, cpu binding) it returns either the
counts the launch must use or the one error it must raise (type and the words
of its line).  The rule for ``-n`` alone is one function, :func:`only_np`, so a
change to it (#14 changed it to "fill accelerators first") is a change in one
place.

* ``valid_cases`` builds launches that fit (a target layout first, then a way
  of asking for it that the rules turn into that target); every one must render
  with exactly those counts, in the Plan and in the launcher's argv.  The share
  of them that end in an error is counted and asserted below 30 % (it is 0 when
  the code agrees with the model: any refusal of a valid case fails the test).
* ``invalid_cases`` breaks one rule on purpose (too many hosts, more ranks than
  a used host's slots or its accelerators, ``-n`` that does not split, PALS
  binding syntax for hydra / Open MPI); each must raise its own error.
* ``any_cases`` draws everything at random, valid or not; the outcome must be
  what the model predicts, whichever it is.

The allocations are values built here (PBS, Slurm, hostfiles and GPUs mocked:
there is no scheduler or accelerator on this machine).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from itertools import combinations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ezpz.errors import EzpzError, SchedulerError, SpecError, plural
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec
from ezpz.plugins.manager import schedulers
from ezpz.schedulers.base import Allocation
from ezpz.schedulers.counting import cpu_bind_note, layout, pack_accelerators_first

ADAPTERS = schedulers()
#: Examples per property; ``nox -s mutate`` lowers it (EZPZ_HYPOTHESIS_EXAMPLES) to keep each mutant's run short.
EXAMPLES = int(os.environ.get("EZPZ_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMMAND = ["python3", "train.py"]
PALS_BINDINGS = ("depth", "list:1-8:9-16:17-24:25-32")
PLAIN_BINDINGS = ("core", "socket", "numa", "none")


@dataclass(frozen=True)
class Job:
    """What the job has: the facts rendering reads besides the counts the user gave."""

    hosts: tuple[str, ...]
    slots: tuple[int, ...] | None = None
    detected: int | None = None  # accelerators the scheduler / probe reports
    accelerators: int | None = None  # accelerators_per_node given in the spec
    oversubscribe: bool = False
    launcher: str = "hydra"
    cpu_bind: str | None = None
    hostfile: str | None = None  # a file already listing the hosts ($PBS_NODEFILE)
    scheduler: str = "pbs"


@dataclass(frozen=True)
class Counts:
    np: int
    ppn: int
    nhosts: int


@dataclass(frozen=True)
class Refusal:
    error: type[EzpzError]
    words: str  # must appear in the error's one line


Asked = dict[str, int]  # the counts the user gave: a subset of np / ppn / nhosts


def accelerators(job: Job) -> int:
    """Accelerators per node: the spec's value wins over what was detected (unknown is 0)."""
    return job.accelerators if job.accelerators is not None else (job.detected or 0)


def only_np(np: int, job: Job) -> tuple[int, int] | Refusal:
    """THE rule for ``-n`` alone: (nhosts, ppn), or the refusal.

    #14: with accelerators known, fill each node's accelerators first (the fewest
    hosts that hold np, evenly); with none (or oversubscribing past them all),
    spread over every host.
    """
    accel, avail = accelerators(job), len(job.hosts)
    if accel > 0 and not (job.oversubscribe and np > accel * avail):
        nhosts = -(-np // accel)
        if nhosts > avail:
            return Refusal(
                SpecError, f"np={np} needs {plural(nhosts, 'host')} at {plural(accel, 'accelerator')} per node"
            )
        if np % nhosts:
            return Refusal(SpecError, f"np={np} does not split evenly over the {plural(nhosts, 'host')}")
        return nhosts, np // nhosts
    if np > avail and np % avail:
        return Refusal(SpecError, f"np={np} is not divisible by the job's {plural(avail, 'host')}")
    nhosts = min(np, avail)
    return nhosts, np // nhosts


def default_ppn(job: Job, nhosts: int | None) -> int:
    """Ranks per host when only nhosts (or nothing) is given: the slots of the hosts used count."""
    if accelerators(job) > 0:
        return accelerators(job)
    if job.slots:
        return min(job.slots[:nhosts])
    return 1


def spec_refusal(asked: Asked) -> Refusal | None:
    """What LaunchSpec itself refuses (counts that contradict each other)."""
    np, ppn, nh = asked.get("np"), asked.get("ppn"), asked.get("nhosts")
    if np is not None and ppn is not None and nh is not None and np != nh * ppn:
        return Refusal(SpecError, f"np={np} is not nhosts × ppn")
    if np is not None and ppn is not None and np % ppn:
        return Refusal(SpecError, f"np={np} is not divisible by ppn={ppn}")
    if np is not None and nh is not None and np % nh:
        return Refusal(SpecError, f"np={np} is not divisible by nhosts={nh}")
    if np is not None and nh is not None and nh > np:
        return Refusal(SpecError, f"nhosts={nh} is more than np={np}")
    return None


def predict(asked: Asked, job: Job) -> Counts | Refusal:
    """The counts a launch must use, or the error it must raise."""
    refused = spec_refusal(asked)
    if refused is not None:
        return refused
    np, ppn, nh = asked.get("np"), asked.get("ppn"), asked.get("nhosts")
    avail, accel = len(job.hosts), accelerators(job)
    if np is not None and ppn is not None:
        nh = np // ppn
    elif np is not None and nh is not None:
        ppn = np // nh
    elif np is not None:
        placed = only_np(np, job)
        if isinstance(placed, Refusal):
            return placed
        nh, ppn = placed
    else:
        ppn = default_ppn(job, nh) if ppn is None else ppn
        nh = avail if nh is None else nh
        np = nh * ppn
    if nh > avail:
        return Refusal(SchedulerError, f"more hosts requested than the job has ({avail})")
    if job.slots is not None and not job.oversubscribe and ppn > min(job.slots[:nh]):
        return Refusal(SchedulerError, f"more ranks per host than the job's slots ({min(job.slots[:nh])})")
    if accel > 0 and ppn > accel and not job.oversubscribe:
        return Refusal(SpecError, f"ppn exceeds the {plural(accel, 'accelerator')} per node")
    if job.launcher in ("hydra", "openmpi") and job.cpu_bind in PALS_BINDINGS:
        return Refusal(SpecError, "cpu binding is PALS syntax")
    return Counts(np, ppn, nh)


# --- rendering, and what the argv must say ------------------------------------------------------


def render(asked: Asked, job: Job) -> Plan | EzpzError:
    fields: dict[str, object] = {
        "command": COMMAND,
        "master_port": 29500,
        "launcher": job.launcher,
        "oversubscribe": job.oversubscribe,
        **asked,
    }
    if job.accelerators is not None:
        fields["accelerators_per_node"] = job.accelerators
    if job.cpu_bind is not None:
        fields["cpu_bind"] = job.cpu_bind
    alloc = Allocation(
        scheduler=job.scheduler,
        hosts=job.hosts,
        job_id="4242",
        hostfile=job.hostfile,
        slots=job.slots,
        accelerators=job.detected,
        source="model test",
        tmpdir="/tmp/ezpz-model",
    )
    try:
        return ADAPTERS[job.scheduler].render(LaunchSpec(**fields), alloc)
    except EzpzError as exc:
        return exc


def _after(argv: tuple[str, ...], flag: str) -> str:
    assert flag in argv, (flag, argv)
    return argv[argv.index(flag) + 1]


def check_rendered(plan: Plan, want: Counts, job: Job) -> None:
    """The Plan and the launcher's argv both carry the counts the model predicts."""
    assert (plan.np, plan.ppn, plan.nhosts) == (want.np, want.ppn, want.nhosts)
    assert plan.hosts == job.hosts[: want.nhosts]
    assert plan.env["MASTER_ADDR"] == job.hosts[0]
    assert plan.env["EZPZ_LOCAL_WORLD_SIZE"] == str(want.ppn)
    argv = plan.argv
    assert list(argv[-len(COMMAND) :]) == COMMAND
    if job.launcher == "pals":
        assert f"--np={want.np}" in argv and f"--ppn={want.ppn}" in argv
    elif job.launcher == "hydra":
        assert _after(argv, "-n") == str(want.np)
        if want.nhosts > 1 or "--hostfile" in argv:
            # More than one host: hydra must be told the ranks per host, or it packs the first host.
            assert _after(argv, "-ppn") == str(want.ppn), argv
    elif job.launcher == "openmpi":
        assert _after(argv, "-n") == str(want.np)
        over = ":OVERSUBSCRIBE" if job.oversubscribe else ""
        assert _after(argv, "--map-by") == f"ppr:{want.ppn}:node{over}"
    else:
        assert f"-N{want.nhosts}" in argv and f"-n{want.np}" in argv
        assert f"--ntasks-per-node={want.ppn}" in argv
    if want.nhosts < len(job.hosts) and job.launcher != "srun":
        # A subset of the job's hosts: a hostfile naming exactly those, in order.
        [(path, content)] = plan.files
        assert content.splitlines() == list(job.hosts[: want.nhosts])
        assert any(token.endswith(path) for token in argv)


def check_outcome(asked: Asked, job: Job) -> Counts | Refusal:
    """Render, compare with the model, and return the model's prediction."""
    want = predict(asked, job)
    got = render(asked, job)
    if isinstance(want, Counts):
        assert isinstance(got, Plan), f"refused a valid launch {asked} on {job}: {got}"
        check_rendered(got, want, job)
    else:
        assert isinstance(got, want.error), f"expected {want.error.__name__} ({want.words}), got {got!r}"
        line = got.line()
        assert want.words in line and "\n" not in line, line
    return want


# --- strategies ---------------------------------------------------------------------------------

HOSTNAMES = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,5}[0-9]", fullmatch=True), min_size=1, max_size=6, unique=True)
SPELLINGS = [dict.fromkeys(keys) for n in range(4) for keys in combinations(("np", "ppn", "nhosts"), n)]


def binding(draw: st.DrawFn, launcher: str, valid: bool = True) -> str | None:
    if launcher == "pals":
        return draw(st.sampled_from((None, *PALS_BINDINGS)))
    if launcher == "srun":
        return draw(st.sampled_from((None, "cores", "none")))
    return draw(st.sampled_from((None, *PLAIN_BINDINGS) if valid else PALS_BINDINGS))


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    """Any job: hosts, maybe slots, maybe accelerators (detected or given), any dialect."""
    hosts = tuple(draw(HOSTNAMES))
    launcher = draw(st.sampled_from(("pals", "hydra", "openmpi", "srun")))
    return Job(
        hosts=hosts,
        slots=draw(st.none() | st.tuples(*[st.integers(1, 8)] * len(hosts))),
        detected=draw(st.none() | st.integers(0, 8)),
        accelerators=draw(st.none() | st.integers(0, 8)),
        oversubscribe=draw(st.booleans()),
        launcher=launcher,
        cpu_bind=binding(draw, launcher),
        hostfile=draw(st.none() | st.just("/var/spool/pbs/aux/4242")),
        scheduler=draw(st.sampled_from(sorted(ADAPTERS))),
    )


@st.composite
def valid_cases(draw: st.DrawFn) -> tuple[Asked, Job, Counts]:
    """A layout that fits the job, and one way of asking for it that the rules turn into it."""
    job = draw(jobs())
    avail, accel = len(job.hosts), accelerators(job)
    nhosts = draw(st.integers(1, avail))
    ppn = draw(st.integers(1, accel if accel > 0 and not job.oversubscribe else 8))
    if job.slots is not None and not job.oversubscribe:
        # The hosts used have room; the others may have fewer slots (they must not matter).
        used = tuple(max(s, ppn) for s in job.slots[:nhosts])
        job = replace(job, slots=used + job.slots[nhosts:])
    target = Counts(nhosts * ppn, ppn, nhosts)
    full = {"np": target.np, "ppn": ppn, "nhosts": nhosts}
    ways = [{k: full[k] for k in keys} for keys in SPELLINGS]
    asked = draw(st.sampled_from([w for w in ways if predict(w, job) == target]))  # np+ppn always fits
    event(f"valid: gave {'+'.join(sorted(asked)) or 'nothing'}")
    return asked, job, target


@st.composite
def invalid_cases(draw: st.DrawFn) -> tuple[Asked, Job, str]:
    """A launch that breaks exactly one rule, and the rule's name."""
    job = draw(jobs())
    avail = len(job.hosts)
    rule = draw(st.sampled_from(("hosts", "slots", "accelerators", "split", "binding")))
    job = replace(job, oversubscribe=False, cpu_bind=None)
    if rule == "hosts":
        asked = {"nhosts": avail + draw(st.integers(1, 3)), "ppn": 1}
        job = replace(job, slots=None)
    elif rule == "slots":
        nhosts = draw(st.integers(1, avail))
        room = draw(st.integers(1, 4))
        slots = [draw(st.integers(room, 8)) for _ in range(avail)]
        slots[draw(st.integers(0, nhosts - 1))] = room  # one used host is short
        asked = {"nhosts": nhosts, "ppn": room + draw(st.integers(1, 4))}
        job = replace(job, slots=tuple(slots), accelerators=0, detected=None)
    elif rule == "accelerators":
        accel = draw(st.integers(1, 8))
        asked = {"ppn": accel + draw(st.integers(1, 4)), "nhosts": draw(st.integers(1, avail))}
        job = replace(job, slots=None, accelerators=accel)
    elif rule == "split":
        # -n alone that the rule for -n cannot place on CPU-only hosts.
        job = replace(job, hosts=(*job.hosts, "zz-spare"), accelerators=0, detected=None, slots=None)
        avail = len(job.hosts)
        asked = {"np": avail * draw(st.integers(1, 4)) + draw(st.integers(1, avail - 1))}
    else:
        job = replace(job, launcher=draw(st.sampled_from(("hydra", "openmpi"))), slots=None, accelerators=0)
        job = replace(job, cpu_bind=binding(draw, job.launcher, valid=False))
        asked = {"ppn": 1}
    event(f"invalid: {rule}")
    return asked, job, rule


# --- the properties -----------------------------------------------------------------------------


def test_valid_cases_render_with_the_model_counts() -> None:
    outcomes: Counter[str] = Counter()

    @SETTINGS
    @given(valid_cases())
    def check(case: tuple[Asked, Job, Counts]) -> None:
        asked, job, target = case
        got = render(asked, job)
        outcomes["error" if isinstance(got, EzpzError) else "rendered"] += 1
        assert not isinstance(got, EzpzError), f"refused a valid launch {asked} on {job}: {got.line()}"
        check_rendered(got, target, job)

    check()
    total = sum(outcomes.values())
    assert total >= min(EXAMPLES, 100), outcomes
    assert outcomes["error"] / total < 0.30, outcomes


@SETTINGS
@given(invalid_cases())
def test_invalid_cases_raise_their_own_error(case: tuple[Asked, Job, str]) -> None:
    asked, job, rule = case
    want = predict(asked, job)
    expected = {
        "hosts": "more hosts requested",
        "slots": "more ranks per host than the job's slots",
        "accelerators": "ppn exceeds the",
        "split": "is not divisible by the job's",
        "binding": "cpu binding is PALS syntax",
    }[rule]
    assert isinstance(want, Refusal) and expected in want.words, (want, rule)  # the model agrees
    check_outcome(asked, job)


@st.composite
def any_cases(draw: st.DrawFn) -> tuple[Asked, Job]:
    asked = {k: draw(st.integers(1, 24)) for k in draw(st.sampled_from(SPELLINGS))}
    return asked, draw(jobs())


@SETTINGS
@given(any_cases())
def test_any_case_renders_or_refuses_as_the_model_says(case: tuple[Asked, Job]) -> None:
    outcome = check_outcome(*case)
    event("rendered" if isinstance(outcome, Counts) else f"refused: {outcome.error.__name__}")


def test_the_model_knows_the_documented_examples() -> None:
    """docs/launch.md's own examples, so the model is not only checked against the code."""
    aurora = Job(hosts=("x1", "x2"), accelerators=12, launcher="pals", cpu_bind=PALS_BINDINGS[1])
    assert predict({}, aurora) == Counts(24, 12, 2)
    assert predict({"np": 12}, aurora) == Counts(12, 12, 1)  # fill accelerators first (#14)
    assert predict({"np": 4}, replace(aurora, accelerators=4)) == Counts(4, 4, 1)
    assert predict({"np": 6}, replace(aurora, accelerators=4)) == Counts(6, 3, 2)
    assert predict({"np": 2}, Job(hosts=("a", "b", "c", "d"))) == Counts(2, 1, 2)
    assert predict({"nhosts": 1, "ppn": 4}, Job(hosts=("a", "b"), slots=(4, 2))) == Counts(4, 4, 1)
    assert predict({"nhosts": 1}, Job(hosts=("a", "b"), slots=(4, 2))) == Counts(4, 4, 1)  # b's 2 slots are not used
    assert isinstance(predict({"np": 10}, Job(hosts=("a", "b", "c", "d"))), Refusal)


# ------------------------------------------------------------------ the rule behind each count, in full

JOB = "PBS_NODEFILE=/n"


def _alloc(**fields: object) -> Allocation:
    return Allocation(scheduler="pbs", **{"hosts": ("a", "b"), "source": JOB, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "alloc", "counts", "provenance"),
    [
        ({"np": 4, "ppn": 2}, {}, (4, 2, 2, 0), {"np": "spec", "ppn": "spec", "nhosts": "np / ppn"}),
        ({"np": 4, "nhosts": 2}, {}, (4, 2, 2, 0), {"np": "spec", "nhosts": "spec", "ppn": "np / nhosts"}),
        (
            {"np": 4, "accelerators_per_node": 2},
            {},
            (4, 2, 2, 2),
            {
                "np": "spec",
                "nhosts": "fill accelerators first: ceil(np / 2 accelerators per node)",
                "ppn": "np / nhosts",
            },
        ),
        (
            {"np": 1},
            {"accelerators": 1},
            (1, 1, 1, 1),
            {
                "np": "spec",
                "nhosts": "fill accelerators first: ceil(np / 1 accelerator per node)",
                "ppn": "np / nhosts",
            },
        ),
        ({"np": 4}, {}, (4, 2, 2, 0), {"np": "spec", "nhosts": "np over the job's 2 hosts", "ppn": "np / nhosts"}),
        (
            {"np": 2},
            {"hosts": ("a", "b", "c")},
            (2, 1, 2, 0),
            {"np": "spec", "nhosts": "np over the job's 3 hosts", "ppn": "np / nhosts"},
        ),
        (
            {"np": 10, "oversubscribe": True},
            {"accelerators": 4},
            (10, 5, 2, 4),
            {"np": "spec", "nhosts": "np over the job's 2 hosts", "ppn": "np / nhosts"},
        ),
        (
            {"np": 8, "oversubscribe": True},
            {"accelerators": 4},
            (8, 4, 2, 4),
            {
                "np": "spec",
                "nhosts": "fill accelerators first: ceil(np / 4 accelerators per node)",
                "ppn": "np / nhosts",
            },
        ),
        (
            {},
            {},
            (2, 1, 2, 0),
            {
                "ppn": "cpu-only nodes: 1 rank per node (pass -ppn for more)",
                "nhosts": f"all hosts of the job ({JOB})",
                "np": "nhosts × ppn",
            },
        ),
        (
            {},
            {"slots": (3, 4)},
            (6, 3, 2, 0),
            {"ppn": f"slots per host ({JOB})", "nhosts": f"all hosts of the job ({JOB})", "np": "nhosts × ppn"},
        ),
        (
            {"nhosts": 1},
            {"slots": (4, 2)},
            (4, 4, 1, 0),
            {"nhosts": "spec", "ppn": f"slots per host ({JOB})", "np": "nhosts × ppn"},
        ),
        (
            {},
            {"accelerators": 2, "left_out": (("c", "excluded"),)},
            (4, 2, 2, 2),
            {
                "ppn": "accelerators per node (detected: 2)",
                "nhosts": f"all usable hosts of the job ({JOB}, 1 left out)",
                "np": "nhosts × ppn",
            },
        ),
        (
            {},
            {"accelerators": 1},
            (2, 1, 2, 1),
            {
                "ppn": "accelerators per node (detected: 1)",
                "nhosts": f"all hosts of the job ({JOB})",
                "np": "nhosts × ppn",
            },
        ),
        (
            {"nhosts": 1},
            {"accelerators": 2},
            (2, 2, 1, 2),
            {"nhosts": "spec", "ppn": "accelerators per node (detected: 2)", "np": "nhosts × ppn"},
        ),
        (
            {"nhosts": 1, "accelerators_per_node": 3},
            {"accelerators": 2},
            (3, 3, 1, 3),
            {"nhosts": "spec", "ppn": "accelerators per node (spec)", "np": "nhosts × ppn"},
        ),
    ],
)
def test_each_count_names_its_rule(spec: dict, alloc: dict, counts: tuple, provenance: dict) -> None:
    lay = layout(LaunchSpec(command=["x"], **spec), _alloc(**alloc))
    assert (lay.np, lay.ppn, lay.nhosts, lay.accelerators) == counts
    assert lay.provenance == provenance


def test_a_count_from_a_layer_names_the_layer() -> None:
    spec = LaunchSpec.from_layers(
        [("config:run.toml", {"np": 4, "accelerators_per_node": 2}), ("flags", {"command": ["x"]})]
    )
    assert layout(spec, _alloc()).provenance["np"] == "config:run.toml"
    spec = LaunchSpec.from_layers([("flags", {"command": ["x"], "ppn": 3, "accelerators_per_node": 2})])
    with pytest.raises(SpecError) as info:
        layout(spec, _alloc())
    assert info.value.line() == (
        "ppn exceeds the 2 accelerators per node (given 'ppn=3'); "
        "accelerators from flags; use -ppn 2 or fewer, or pass --oversubscribe"
    )


@pytest.mark.parametrize(
    ("spec", "alloc", "line"),
    [
        (
            {"np": 3},
            {},
            "np=3 is not divisible by the job's 2 hosts (given '-n 3'); give -ppn or -nh too, or a multiple of the host count",
        ),
        (
            {"nhosts": 3},
            {},
            f"more hosts requested than the job has (2) (given 'nhosts=3'); use -nh 2 or fewer; hosts from {JOB}",
        ),
        (
            {"ppn": 5},
            {"slots": (4, 4)},
            "more ranks per host than the job's slots (4) (given 'np=10 ppn=5'); "
            "the job has 8 slots on 2 hosts; pass --oversubscribe to override",
        ),
        (
            {"ppn": 2},
            {"slots": (1,), "hosts": ("a",)},
            "more ranks per host than the job's slots (1) (given 'np=2 ppn=2'); "
            "the job has 1 slot on 1 host; pass --oversubscribe to override",
        ),
        (
            {"ppn": 5},
            {"accelerators": 4},
            "ppn exceeds the 4 accelerators per node (given 'ppn=5'); "
            "accelerators from detected: 4; use -ppn 4 or fewer, or pass --oversubscribe",
        ),
        (
            {"ppn": 2},
            {"accelerators": 1},
            "ppn exceeds the 1 accelerator per node (given 'ppn=2'); "
            "accelerators from detected: 1; use -ppn 1 or fewer, or pass --oversubscribe",
        ),
        (
            {"np": 9},
            {"accelerators": 4},
            "np=9 needs 3 hosts at 4 accelerators per node, the job has 2 (given '-n 9'); "
            "valid: -n 8 (2 hosts × 4); or pass --oversubscribe to put more ranks on each host",
        ),
        (
            {"np": 5},
            {"accelerators": 1},
            "np=5 needs 5 hosts at 1 accelerator per node, the job has 2 (given '-n 5'); "
            "valid: -n 2 (2 hosts × 1); or pass --oversubscribe to put more ranks on each host",
        ),
        (
            {"np": 7},
            {"accelerators": 4},
            "np=7 does not split evenly over the 2 hosts it needs at 4 accelerators per node (given '-n 7'); "
            "valid: -n 6 (2 hosts × 3), -n 8 (2 hosts × 4)",
        ),
    ],
)
def test_counting_errors_in_full(spec: dict, alloc: dict, line: str) -> None:
    with pytest.raises(EzpzError) as info:
        layout(LaunchSpec(command=["x"], **spec), _alloc(**alloc))
    assert info.value.line() == line


@pytest.mark.parametrize(
    ("cpu_bind", "ppn", "note"),
    [
        ("list:1:2:3", 2, "list of 3 entries cut to ppn=2"),
        ("list:1:2", 1, "list of 2 entries cut to ppn=1"),
        ("list:1", 2, "list of 1 entry for ppn=2: passed as given (fewer entries than ranks per node)"),
        ("list:1:2", 3, "list of 2 entries for ppn=3: passed as given (fewer entries than ranks per node)"),
        ("list:1:2", 2, None),
        ("depth", 2, None),
        (None, 2, None),
    ],
)
def test_cpu_bind_note(cpu_bind: str | None, ppn: int, note: str | None) -> None:
    assert cpu_bind_note(cpu_bind, ppn) == note


@pytest.mark.parametrize(
    ("np", "accelerators", "hosts", "valid"),
    [
        (8, 3, 4, "-n 6 (2 hosts × 3), -n 9 (3 hosts × 3), -nh 4 -ppn 2"),
        (10, 4, 5, "-n 9 (3 hosts × 3), -n 12 (3 hosts × 4), -nh 5 -ppn 2"),
        (5, 4, 5, "-n 4 (1 host × 4), -n 6 (2 hosts × 3), -nh 5 -ppn 1"),
        (10, 4, 4, "-n 9 (3 hosts × 3), -n 12 (3 hosts × 4)"),  # -nh 5 would need a fifth host
    ],
)
def test_the_packing_refusal_offers_near_counts_and_exact_layouts_on_more_hosts(
    np: int, accelerators: int, hosts: int, valid: str
) -> None:
    with pytest.raises(SpecError) as info:
        pack_accelerators_first(np, accelerators, hosts)
    need = -(-np // accelerators)
    assert info.value.line() == (
        f"np={np} does not split evenly over the {need} hosts it needs at {accelerators} accelerators per node "
        f"(given '-n {np}'); valid: {valid}"
    )


@pytest.mark.parametrize(("np", "want"), [(1, (1, 1)), (4, (1, 4)), (6, (2, 3)), (8, (2, 4)), (9, (3, 3))])
def test_packing_uses_the_fewest_hosts_evenly(np: int, want: tuple[int, int]) -> None:
    assert pack_accelerators_first(np, 4, 3) == want
