"""Hypothesis properties of the launch core (see DESIGN.md, Tests).

* a valid spec survives ``model_dump`` → ``model_validate`` (Python, JSON and
  a TOML config file read by ``LaunchSpec.from_file``);
* rendering is the same in other interpreters (other hash seeds), and raises only
  ``SpecError``/``SchedulerError`` (the counts themselves: tests/test_counting_model.py);
* ``shlex.split(str(plan)) == list(plan.argv)`` for hostile strings;
* any combination of bad numbers raises ``SpecError`` (or ``SchedulerError``
  when the allocation cannot fit it) and nothing else;
* the hostfile parser accepts the valid forms, rejects garbage with its line
  number, and never raises another exception type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ezpz.errors import SchedulerError, SpecError
from ezpz.launch.resolve import plan_launch
from ezpz.model.allocation import Allocation
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec
from ezpz.plugins.manager import schedulers
from ezpz.schedulers.dialects import DIALECTS
from ezpz.schedulers.hosts import expand_nodelist, parse_hostfile

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ADAPTERS = schedulers()

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,8}[0-9]", fullmatch=True)
HOSTILE = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "'",
            '"',
            "a b",
            "$HOME",
            "$(rm -rf ~)",
            "`id`",
            "a\nb",
            "\t",
            "\r\n",
            "\\",
            "ünïcødé",
            "😀 x",
            "-n",
            "--",
            "--help",
            ";",
            "|",
            "&&",
            "*",
            "~",
            "#c",
            "it's",
            'say "hi"',
            "%s{}",
            "\x7f",
            "\u2028",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def counts(draw: st.DrawFn) -> dict[str, int]:
    """np, ppn, nhosts: any consistent subset."""
    nhosts, ppn = draw(st.integers(1, 32)), draw(st.integers(1, 32))
    full = {"np": nhosts * ppn, "ppn": ppn, "nhosts": nhosts}
    keep = draw(st.sets(st.sampled_from(sorted(full))))
    return {key: full[key] for key in keep}


OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "hostfile": st.builds(lambda a, b: Path(f"/{a}/{b}"), NAMES, NAMES),
    "cpu_bind": st.text(min_size=1, max_size=20),
    "env": st.dictionaries(NAMES, st.text(max_size=10), max_size=4),
    "launcher_flags": st.lists(st.text(max_size=10), max_size=4),
    "launcher": st.sampled_from(sorted(DIALECTS)),
    "accelerators_per_node": st.integers(0, 4096),
    "timeout": st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False),
    "retries": st.integers(0, 100),
    "template": NAMES,
    "scheduler": NAMES,
    "oversubscribe": st.booleans(),
    "master_port": st.integers(1, 65535),
    "rank_env": st.booleans(),
}


@st.composite
def specs(draw: st.DrawFn) -> LaunchSpec:
    """Any valid LaunchSpec."""
    fields = draw(counts())
    fields["command"] = draw(st.lists(st.text(max_size=10), min_size=1, max_size=5))
    fields.update(draw(st.fixed_dictionaries({}, optional=OPTIONAL_FIELDS)))
    return LaunchSpec(**fields)


def toml_value(value: Any) -> str:
    """A TOML literal for the JSON-mode values of a spec (TOML basic strings are JSON strings but for DEL)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@FAST
@given(specs())
def test_spec_survives_dump_and_validate(spec: LaunchSpec) -> None:
    assert LaunchSpec.model_validate(spec.model_dump()) == spec
    assert LaunchSpec.model_validate_json(spec.model_dump_json()).model_dump() == spec.model_dump()
    assert LaunchSpec(**spec.model_dump(exclude_unset=True)) == spec


@FAST
@given(spec=specs())
def test_spec_survives_a_toml_config_file(spec: LaunchSpec, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("config") / "launch.toml"
    data = spec.model_dump(mode="json", exclude_none=True)
    path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in data.items()), encoding="utf-8")
    loaded = LaunchSpec.from_file(path)
    assert loaded.model_dump() == spec.model_dump()
    # Empty tables and lists contribute nothing to a merge, so they have no provenance.
    assert set(loaded.provenance) == {key for key, value in data.items() if value not in ([], {})}


@st.composite
def allocations(draw: st.DrawFn) -> Allocation:
    """Any allocation an adapter could read: unique hosts, maybe slots and accelerators."""
    hosts = tuple(draw(st.lists(HOSTS, min_size=1, max_size=8, unique=True)))
    slots = draw(st.none() | st.lists(st.integers(1, 16), min_size=len(hosts), max_size=len(hosts)).map(tuple))
    return Allocation(
        scheduler=draw(st.sampled_from(sorted(ADAPTERS))),
        hosts=hosts,
        job_id=draw(st.none() | st.from_regex(r"[0-9]{1,8}(\.[a-z0-9-]{1,12})?", fullmatch=True)),
        hostfile=draw(st.none() | st.just("/var/spool/pbs/aux/job")),
        slots=slots,
        accelerators=draw(st.none() | st.integers(0, 16)),
        source="property test",
        tmpdir="/tmp/ezpz-test",
        python="/usr/bin/python3",
    )


def _outcome(spec: LaunchSpec, alloc: Allocation) -> Plan | str:
    try:
        return ADAPTERS[alloc.scheduler].render(spec, alloc)
    except (SpecError, SchedulerError) as exc:
        return f"{type(exc).__name__}: {exc.line()}"


RENDERABLE: dict[str, st.SearchStrategy[Any]] = {
    "cpu_bind": st.sampled_from(["depth", "none", "list:0-3:4-7:8-11:12-15", "list:1:2", "core"]),
    "launcher": st.sampled_from(sorted(DIALECTS)),
    "accelerators_per_node": st.integers(0, 16),
    "oversubscribe": st.booleans(),
    "env": st.dictionaries(NAMES, st.text(max_size=6), max_size=3),
    "launcher_flags": st.lists(st.sampled_from(["--no-vni", "-v", "--depth=8"]), max_size=2),
    "rank_env": st.booleans(),
}


@st.composite
def renderable_specs(draw: st.DrawFn) -> LaunchSpec:
    fields = draw(counts())
    fields.update(draw(st.fixed_dictionaries({}, optional=RENDERABLE)))
    return LaunchSpec(command=["python3", "train.py"], master_port=draw(st.integers(1, 65535)), **fields)


#: Renders the JSON cases on stdin in a fresh interpreter, as _outcome does here.
RENDER_ELSEWHERE = """
import json, sys
from ezpz.errors import SchedulerError, SpecError
from ezpz.plugins.manager import schedulers
from ezpz.schedulers.base import Allocation
from ezpz.model.spec import LaunchSpec

adapters = schedulers()
out = []
for spec, alloc in json.load(sys.stdin):
    alloc = {**alloc, "hosts": tuple(alloc["hosts"]), "slots": alloc["slots"] and tuple(alloc["slots"])}
    alloc = Allocation(**alloc)
    try:
        out.append(adapters[alloc.scheduler].render(LaunchSpec(**spec), alloc).to_dict())
    except (SpecError, SchedulerError) as exc:
        out.append(f"{type(exc).__name__}: {exc.line()}")
print(json.dumps(out))
"""


def test_rendering_is_the_same_in_other_interpreters() -> None:
    """Pure rendering: the same plans in two fresh interpreters with different hash seeds as here.

    (Calling it twice in one process cannot catch an order that depends on hashing.)  The
    cases are collected from hypothesis first, plus one per dialect, then rendered elsewhere
    in one go (two interpreter starts, not two per case).
    """
    cases = [
        (LaunchSpec(command=["python3"], launcher=launcher, env={"A": "1", "B": "2"}, master_port=1), alloc)
        for launcher in sorted(DIALECTS)
        for alloc in (Allocation("pbs", ("a1", "a2", "a3"), job_id="7", hostfile="/var/spool/pbs/aux/7"),)
    ]

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(renderable_specs(), allocations())
    def collect(spec: LaunchSpec, alloc: Allocation) -> None:
        cases.append((spec, alloc))

    collect()
    here = [p.to_dict() if isinstance(p, Plan) else p for p in (_outcome(spec, alloc) for spec, alloc in cases)]
    assert {p["launcher"] for p in here if isinstance(p, dict)} == set(DIALECTS)
    data = json.dumps([[spec.model_dump(mode="json"), dataclasses.asdict(alloc)] for spec, alloc in cases])
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", RENDER_ELSEWHERE],
            input=data,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == json.loads(json.dumps(here)), f"PYTHONHASHSEED={seed}"


@FAST
@given(
    command=st.lists(HOSTILE, min_size=1, max_size=6),
    flags=st.lists(HOSTILE, max_size=3),
    cpu_bind=st.none() | HOSTILE.filter(lambda s: bool(s) and not s.startswith("list:")),
    launcher=st.sampled_from(sorted(DIALECTS)),
    alloc=allocations(),
)
@example(
    command=["python3", "-c", "print('a b')"],
    flags=[],
    cpu_bind=None,
    launcher="pals",
    alloc=Allocation("local", ("localhost",)),
)
def test_shell_quoting_round_trips(
    command: list[str], flags: list[str], cpu_bind: str | None, launcher: str, alloc: Allocation
) -> None:
    spec = LaunchSpec(
        command=command,
        launcher_flags=flags,
        cpu_bind=cpu_bind,
        launcher=launcher,
        master_port=29500,
        oversubscribe=True,
    )
    plan = _outcome(spec, alloc)
    assert isinstance(plan, Plan), plan
    assert shlex.split(str(plan)) == list(plan.argv)
    assert list(plan.argv[-len(command) :]) == command


BAD_NUMBERS = st.one_of(
    st.none(),
    st.integers(1, 64),
    st.integers(-(10**12), 0),
    st.integers(10_000_001, 10**30),
    st.sampled_from([1.5, -2.0, math.nan, math.inf, -math.inf, "x", "", "4.0", "-3", "0x10", "1e3", [], {}]),
)


@settings(max_examples=80, deadline=None)
@given(np=BAD_NUMBERS, ppn=BAD_NUMBERS, nhosts=BAD_NUMBERS, alloc=allocations())
@example(np=-1, ppn=None, nhosts=None, alloc=Allocation("local", ("localhost",)))
@example(np=10, ppn=4, nhosts=2, alloc=Allocation("local", ("localhost",)))
@example(np=48, ppn=12, nhosts=None, alloc=Allocation("pbs", ("a1", "a2"), accelerators=12))
def test_bad_numbers_raise_spec_or_scheduler_errors_only(np: Any, ppn: Any, nhosts: Any, alloc: Allocation) -> None:
    fields = {k: v for k, v in {"np": np, "ppn": ppn, "nhosts": nhosts}.items() if v is not None}
    try:
        spec = LaunchSpec(command=["python3", "train.py"], master_port=29500, **fields)
    except SpecError as exc:
        assert exc.line() and "\n" not in exc.line()
        return
    plan = _outcome(spec, alloc)
    if isinstance(plan, Plan):
        assert plan.np == plan.nhosts * plan.ppn and plan.nhosts <= len(alloc.hosts)


@settings(max_examples=40, deadline=None)
@given(np=BAD_NUMBERS, ppn=BAD_NUMBERS, nhosts=BAD_NUMBERS, accel=st.sampled_from(["4", "0", "-1", "x"]))
def test_bad_numbers_from_the_environment(
    np: Any, ppn: Any, nhosts: Any, accel: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Through the real resolution path (the EZPZ_* layer, strings), on a 3-host hostfile."""
    hosts = tmp_path_factory.getbasetemp() / "three-hosts"
    hosts.write_text("n1\nn2\nn3\n")
    environ = {"EZPZ_HOSTFILE": str(hosts), "EZPZ_MASTER_PORT": "29500", "EZPZ_ACCELERATORS_PER_NODE": accel}
    for var, value in (("EZPZ_NP", np), ("EZPZ_PPN", ppn), ("EZPZ_NHOSTS", nhosts)):
        if value is not None:
            environ[var] = str(value)
    try:
        plan = plan_launch([("flags", {"command": ["python3", "train.py"]})], environ)
    except (SpecError, SchedulerError) as exc:
        assert exc.line()
        return
    assert plan.np == plan.nhosts * plan.ppn and plan.nhosts <= 3


# --- hostfiles -------------------------------------------------------------------


@st.composite
def hostfile_entries(draw: st.DrawFn) -> list[tuple[str, str | None, int]]:
    """(host, form, slots) entries; form None is a plain line, else ':' or 'slots='."""
    entries = draw(
        st.lists(
            st.tuples(HOSTS, st.sampled_from([None, ":", "slots=", "max_slots="]), st.integers(1, 64)),
            min_size=1,
            max_size=10,
        )
    )
    return [(host, form, 1 if form is None else n) for host, form, n in entries]


def _line(host: str, form: str | None, slots: int, pad: str, comment: str) -> str:
    body = host if form is None else f"{host}:{slots}" if form == ":" else f"{host} {form}{slots}"
    return f"{pad}{body}{pad}{comment}"


@settings(max_examples=60, deadline=None)
@given(
    entries=hostfile_entries(),
    noise=st.lists(st.sampled_from(["", "   ", "# comment", "\t# x: y slots=3"]), max_size=10),
    pad=st.sampled_from(["", " ", "\t"]),
    comment=st.sampled_from(["", " # rack 4", "#x"]),
    seed=st.randoms(use_true_random=False),
)
def test_hostfile_valid_forms(
    entries: list[tuple[str, str | None, int]], noise: list[str], pad: str, comment: str, seed: Any
) -> None:
    lines = [_line(h, f, n, pad, comment) for h, f, n in entries]
    for extra in noise:
        lines.insert(seed.randint(0, len(lines)), extra)
    parsed = parse_hostfile("\n".join(lines))
    totals: dict[str, int] = {}
    for host, _, n in entries:
        totals[host] = totals.get(host, 0) + n
    assert parsed.hosts == tuple(totals)
    explicit = any(f is not None for _, f, _ in entries) or len(totals) < len(entries)
    assert parsed.slots == (tuple(totals.values()) if explicit else None)


GARBAGE = st.one_of(
    st.sampled_from(
        [
            "a b",
            "host:0",
            "host:x",
            "host:",
            "host slots=",
            "host slots=0",
            "host slots=-1",
            "-host",
            "ho$t",
            "a:b:c",
            "host:²",
            "host:-2",
            "host slots=2 junk",
            "höst",
            "a;b",
            "host\x00",
        ]
    ),
    st.builds(lambda h, j: h + j, HOSTS, st.text(alphabet="!$;&|()'\"`*?<>=", min_size=1, max_size=4)),
)


@settings(max_examples=100, deadline=None)
@given(entries=hostfile_entries(), garbage=GARBAGE, where=st.integers(0, 10))
@example(entries=[("a1", None, 1)], garbage="host:²", where=1)
def test_hostfile_garbage_names_its_line(entries: list[tuple[str, str | None, int]], garbage: str, where: int) -> None:
    lines = [_line(h, f, n, "", "") for h, f, n in entries]
    at = min(where, len(lines))
    lines.insert(at, garbage)
    with pytest.raises(SpecError) as info:
        parse_hostfile("\n".join(lines), origin="hosts")
    assert f"hosts line {at + 1}" in info.value.what
    assert info.value.given == garbage.strip()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
@example("a:²")
@example("a:١٢")
@example("\x0c\n\x1c")
def test_hostfile_parser_never_raises_anything_else(text: str) -> None:
    try:
        parsed = parse_hostfile(text)
    except SpecError as exc:
        assert "\n" not in exc.line()
        return
    assert parsed.hosts and all(parsed.hosts)
    assert parsed.slots is None or (len(parsed.slots) == len(parsed.hosts) and min(parsed.slots) >= 1)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abn0123456789[]-,x", max_size=30))
def test_nodelist_parser_never_raises_anything_else(text: str) -> None:
    try:
        hosts = expand_nodelist(text)
    except SchedulerError:
        return
    assert hosts and all(isinstance(h, str) and h for h in hosts)
