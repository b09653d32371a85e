"""LaunchSpec validation, layer merging, counting rules and the bad-input list of issue 2.

Every bad input must raise an :class:`~ezpz.errors.EzpzError` whose one line
names what was wrong, what was given and what is valid.  Counting errors are
checked against explicit :class:`~ezpz.schedulers.base.Allocation` values (a
PBS job's hosts, mocked: there is no PBS server here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ezpz import LaunchSpec
from ezpz.cli import main
from ezpz.errors import EzpzError, SchedulerError, SpecError
from ezpz.launch.layers import env_layer
from ezpz.launch.machine import Machine
from ezpz.launch.resolve import plan_launch, resolve
from ezpz.model.allocation import Allocation
from ezpz.model.spec import load_config, merge_layers
from ezpz.schedulers.counting import cut_cpu_bind
from ezpz.schedulers.pbs import PBS

CMD = ["python3", "train.py"]
AURORA_CPUS = "list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100"


def assert_line(exc: EzpzError, *parts: str) -> str:
    """The error's one line contains every part (what, given, valid) and no newline."""
    line = exc.line()
    assert "\n" not in line
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    return line


def aurora(hosts: int = 2, **fields: object) -> Allocation:
    """An Aurora PBS job's allocation (hosts from a nodefile)."""
    names = tuple(f"x4000c0s{i}b0n0" for i in range(hosts))
    return Allocation(
        scheduler="pbs",
        hosts=names,
        job_id="8123456.aurora-pbs-0001",
        hostfile="/var/spool/pbs/aux/8123456",
        source="PBS_NODEFILE",
        **fields,
    )  # type: ignore[arg-type]


def render(alloc: Allocation, **fields: object) -> object:
    """Render an Aurora-like spec (12 tiles per node, the site's cpu list) on ``alloc``."""
    base: dict[str, object] = {
        "command": CMD,
        "master_port": 29500,
        "launcher": "pals",
        "accelerators_per_node": 12,
        "cpu_bind": AURORA_CPUS,
    }
    return PBS().render(LaunchSpec(**{**base, **fields}), alloc)


# --- the model ---------------------------------------------------------------


def test_command_string_is_split_like_a_shell() -> None:
    assert LaunchSpec(command="python3 -c 'print(1)'").command == ["python3", "-c", "print(1)"]


def test_spec_is_frozen() -> None:
    spec = LaunchSpec(command=CMD)
    with pytest.raises(Exception, match="frozen"):
        spec.np = 4  # type: ignore[misc]


def test_json_schema_lists_every_field() -> None:
    schema = LaunchSpec.model_json_schema()
    assert set(schema["properties"]) == set(LaunchSpec.model_fields)
    assert schema.get("additionalProperties") is False


def test_env_items_become_a_table() -> None:
    assert LaunchSpec(env=["A=1", "B=x=y", "C="]).env == {"A": "1", "B": "x=y", "C": ""}


@pytest.mark.parametrize(
    ("fields", "parts"),
    [
        ({"np": -1}, ("np", "-1", "greater than or equal to 1")),
        ({"ppn": 0}, ("ppn", "0", "greater than or equal to 1")),
        ({"nhosts": -3}, ("nhosts", "-3", "greater than or equal to 1")),
        ({"np": 10**9}, ("np", str(10**9), "less than or equal to")),
        ({"np": "many"}, ("np", "many", "integer")),
        ({"np": 2.5}, ("np", "2.5")),
        ({"retries": -1}, ("retries", "-1", "greater than or equal to 0")),
        ({"timeout": 0}, ("timeout", "0", "greater than 0")),
        ({"timeout": -5.0}, ("timeout", "-5", "greater than 0")),
        ({"master_port": 70000}, ("master_port", "70000", "65535")),
        ({"master_port": 0}, ("master_port", "0")),
        ({"accelerators_per_node": -1}, ("accelerators_per_node", "-1")),
        ({"template": "  "}, ("template", "blank")),
        ({"env": {"1BAD": "x"}}, ("env", "1BAD", "letters, digits and _")),
        ({"env": {"A-B": "x"}}, ("env", "A-B")),
        ({"npp": 4}, ("unknown key", "npp", "did you mean 'np'")),
        ({"command": "python3 'unbalanced"}, ("command", "unbalanced")),
    ],
)
def test_bad_field_is_one_spec_error_line(fields: dict[str, object], parts: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(**{"command": CMD, **fields})
    assert_line(info.value, *parts)


def test_unknown_launcher_is_one_spec_error_line() -> None:
    """Dialects are open to plugins, so the name is checked against them when the spec is rendered."""
    spec = LaunchSpec(command=CMD, launcher="mpich3")
    with pytest.raises(SpecError) as info:
        PBS().render(spec, Allocation(scheduler="pbs", hosts=("a",)))
    assert_line(info.value, "launcher", "mpich3", "pals")


@pytest.mark.parametrize(
    ("fields", "parts"),
    [
        ({"np": 10, "ppn": 4, "nhosts": 2}, ("np=10", "nhosts × ppn", "give two of the three")),
        ({"np": 10, "ppn": 4}, ("np=10", "not divisible by ppn=4")),
        ({"np": 10, "nhosts": 4}, ("np=10", "not divisible by nhosts=4")),
        ({"np": 8, "ppn": 4, "nhosts": 3}, ("np=8", "3 × 4")),
    ],
)
def test_mismatched_counts(fields: dict[str, int], parts: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(command=CMD, **fields)  # type: ignore[arg-type]
    assert_line(info.value, *parts)


@pytest.mark.parametrize(
    ("fields", "fixes"),
    [
        ({"np": 3, "ppn": 2}, "use -n 2 or -n 4, or -ppn 1 or -ppn 3"),
        ({"np": 10, "ppn": 4}, "use -n 8 or -n 12, or -ppn 2 or -ppn 5"),
        ({"np": 12, "ppn": 5}, "use -n 10 or -n 15, or -ppn 4 or -ppn 6"),
        ({"np": 3, "ppn": 4}, "use -n 4, or -ppn 3"),  # no multiple of 4 below 3
        ({"np": 7, "ppn": 2}, "use -n 6 or -n 8, or -ppn 1 or -ppn 7"),
        ({"np": 10, "nhosts": 4}, "use -n 8 or -n 12, or -nh 2 or -nh 5"),
    ],
)
def test_a_count_that_does_not_divide_names_the_nearest_that_do(fields: dict[str, int], fixes: str) -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(command=CMD, **fields)  # type: ignore[arg-type]
    np, (name, per) = fields["np"], [(k, v) for k, v in fields.items() if k != "np"][0]
    assert info.value.line().endswith(f"np={np} is not divisible by {name}={per}; {fixes}"), info.value.line()


@pytest.mark.parametrize("item", ["FOO", "FOO bar", ""])
def test_env_item_without_equals(item: str) -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(command=CMD, env=[item])
    assert_line(info.value, "KEY=VALUE", repr(item), "-x NAME=value")


def test_env_item_without_equals_in_a_layer() -> None:
    with pytest.raises(SpecError) as info:
        merge_layers([("flags", {"env": ["GOOD=1", "BAD"]})])
    assert_line(info.value, "'BAD'", "KEY=VALUE")


# --- layers and provenance ---------------------------------------------------


def test_layers_merge_in_order_with_provenance() -> None:
    spec = LaunchSpec.from_layers(
        [
            (
                "template:polaris",
                {"cpu_bind": "depth", "launcher_flags": ["--depth=8"], "env": {"A": "t", "B": "t"}, "ppn": 4},
            ),
            ("config:team.toml", {"cpu_bind": "core", "env": {"B": "c"}, "np": 8}),
            ("env", {"ppn": "2", "launcher_flags": ["--no-vni"]}),
            ("flags", {"command": CMD, "env": ["C=f"], "ppn": 8}),
        ]
    )
    assert spec.cpu_bind == "core"
    assert spec.ppn == 8 and spec.np == 8
    assert spec.env == {"A": "t", "B": "c", "C": "f"}
    assert spec.launcher_flags == ["--depth=8", "--no-vni"]
    prov = spec.provenance
    assert prov["cpu_bind"] == "config:team.toml"
    assert prov["ppn"] == "flags"
    assert prov["np"] == "config:team.toml"
    assert prov["env"] == "template:polaris+config:team.toml+flags"
    assert prov["launcher_flags"] == "template:polaris+env"
    assert "timeout" not in prov


def test_environment_layer_reads_ezpz_variables() -> None:
    layer = env_layer(
        {"EZPZ_NP": "8", "CPU_BIND": "depth", "EZPZ_OVERSUBSCRIBE": "1", "HOME": "/root", "EZPZ_PPN": "  "}
    )
    assert layer == {"np": "8", "cpu_bind": "depth", "oversubscribe": "1"}
    spec = LaunchSpec.from_layers([("env", layer), ("flags", {"command": CMD})])
    assert (spec.np, spec.cpu_bind, spec.oversubscribe) == (8, "depth", True)


def test_bad_environment_value_names_the_layer() -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_layers([("env", env_layer({"EZPZ_NP": "-4"})), ("flags", {"command": CMD})])
    assert_line(info.value, "np", "(from env)", "-4", "greater than or equal to 1")


def test_flag_beats_environment_beats_config_beats_template(
    tmp_path: Path, fake_machine: Callable[..., Machine], pbs_job: Callable[..., dict[str, str]]
) -> None:
    """The real resolution path, on a mocked Polaris PBS job."""
    config = tmp_path / "team.toml"
    config.write_text('template = "polaris"\ncpu_bind = "core"\nretries = 3\ntimeout = 60.0\n')
    environ = pbs_job(("x3005c0s13b0n0", "x3005c0s13b1n0"), "1.polaris", EZPZ_RETRIES="1", CPU_BIND="none")
    fake_machine(hostname="polaris-login-01")
    layers = [
        (f"config:{config}", load_config(config)),
        ("flags", {"command": CMD, "cpu_bind": "depth", "master_port": 4242}),
    ]
    spec = resolve(layers, environ).spec
    assert spec.cpu_bind == "depth" and spec.provenance["cpu_bind"] == "flags"
    assert spec.retries == 1 and spec.provenance["retries"] == "env"
    assert spec.timeout == 60.0 and spec.provenance["timeout"] == f"config:{config}"
    assert spec.launcher_flags == ["--depth=8"] and spec.provenance["launcher_flags"] == "template:polaris"
    assert spec.accelerators_per_node == 4


# --- config files --------------------------------------------------------------


def test_config_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    path.write_text('command = ["python3", "train.py"]\nnp = 8\nppn = 4\nenv = { OMP_NUM_THREADS = "4" }\n')
    spec = LaunchSpec.from_file(path)
    assert (spec.np, spec.ppn, spec.env) == (8, 4, {"OMP_NUM_THREADS": "4"})
    assert spec.provenance["np"] == f"config:{path}"


def test_config_unknown_key_names_file_key_and_closest(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    path.write_text("nhost = 2\n")
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_file(path)
    assert_line(info.value, str(path), "'nhost'", "did you mean 'nhosts'")


def test_config_bad_value_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    path.write_text("np = -4\n")
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_file(path)
    assert_line(info.value, str(path), "np", "-4")


def test_bad_flag_is_not_blamed_on_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "launch.toml"
    path.write_text("retries = 1\n")
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_layers([(f"config:{path}", load_config(path)), ("flags", {"command": CMD, "np": -1})])
    line = assert_line(info.value, "np", "-1", "flags")
    assert str(path) not in line


@pytest.mark.parametrize(("text", "part"), [(None, "not found"), ("np = [", "not valid TOML")])
def test_config_missing_or_broken(tmp_path: Path, text: str | None, part: str) -> None:
    path = tmp_path / "launch.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_file(path)
    assert_line(info.value, part, str(path))


# --- counting against an allocation -------------------------------------------


def test_counting_rules() -> None:
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora())) == (24, 12, 2)
    # Only -n on nodes with accelerators: fill them first (issue #14).
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora(), np=12)) == (12, 12, 1)
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora(), np=8, ppn=4)) == (8, 4, 2)
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora(4), nhosts=2)) == (24, 12, 2)
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora(4), np=12, nhosts=3)) == (12, 4, 3)
    assert (lambda p: (p.np, p.ppn, p.nhosts))(render(aurora(4), np=2)) == (2, 2, 1)
    # CPU-only nodes keep spreading -n over the job's hosts.
    cpu_only = render(aurora(4), np=2, accelerators_per_node=0, cpu_bind=None)
    assert (cpu_only.np, cpu_only.ppn, cpu_only.nhosts) == (2, 1, 2)  # type: ignore[attr-defined]


def test_np_not_divisible_by_the_jobs_hosts() -> None:
    with pytest.raises(SpecError) as info:
        render(aurora(4), np=10, accelerators_per_node=0, cpu_bind=None)
    assert_line(info.value, "np=10", "4 hosts", "-ppn or -nh")


def test_np_larger_than_the_allocation() -> None:
    with pytest.raises(SchedulerError) as info:
        render(aurora(2), np=48, ppn=12)
    assert_line(info.value, "more hosts", "(2)", "nhosts=4", "-nh 2 or fewer")


def test_np_larger_than_the_slots() -> None:
    with pytest.raises(SchedulerError) as info:
        render(aurora(2, slots=(4, 4)), np=16)
    assert_line(info.value, "slots (4)", "np=16 ppn=8", "--oversubscribe")
    assert render(aurora(2, slots=(4, 4)), np=16, accelerators_per_node=0, cpu_bind=None, oversubscribe=True).np == 16  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "counts"),
    [
        (["-nh", "1", "-ppn", "4"], (4, 4, 1)),
        (["-n", "4", "-ppn", "4"], (4, 4, 1)),
        (["-nh", "2", "-ppn", "2"], (4, 2, 2)),
    ],
)
def test_slots_are_checked_on_the_hosts_used_only(
    args: list[str],
    counts: tuple[int, int, int],
    tmp_path: Path,
    no_job_env: None,
    capsys: pytest.CaptureFixture[str],
    fake_machine: Callable[..., Machine],
) -> None:
    """Hostfile ``a:4``, ``b:2``: one host at 4 ranks fits (host b's 2 slots are not used)."""
    fake_machine(how="mocked probe (no accelerators here)")
    hosts = tmp_path / "hosts"
    hosts.write_text("a:4\nb:2\n")
    code = main(["launch", "--dry-run", "--json", "--hostfile", str(hosts), *args, "--", "python3", "x.py"])
    out, err = capsys.readouterr()
    assert code == 0, err
    plan = json.loads(out)
    assert (plan["np"], plan["ppn"], plan["nhosts"]) == counts
    assert plan["hosts"] == ["a", "b"][: counts[2]]


@pytest.mark.parametrize(("args", "room"), [(["-nh", "2", "-ppn", "4"], "(2)"), (["-nh", "1", "-ppn", "5"], "(4)")])
def test_slots_of_a_used_host_are_still_enforced(
    args: list[str], room: str, tmp_path: Path, no_job_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("a:4\nb:2\n")
    assert main(["launch", "--dry-run", "--hostfile", str(hosts), *args, "--", "python3", "x.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: more ranks per host than the job's slots " + room) and err.count("\n") == 1, err


def test_nhosts_above_the_allocation() -> None:
    with pytest.raises(SchedulerError) as info:
        render(aurora(2), nhosts=3)
    assert_line(info.value, "more hosts requested", "nhosts=3", "-nh 2")


def test_ppn_above_accelerators() -> None:
    with pytest.raises(SpecError) as info:
        render(aurora(), ppn=24, cpu_bind="depth")
    assert_line(info.value, "ppn exceeds the 12 accelerators", "ppn=24", "--oversubscribe")


def test_oversubscribe_allows_ppn_above_accelerators() -> None:
    plan = render(aurora(), ppn=24, cpu_bind="depth", oversubscribe=True)
    assert (plan.np, plan.ppn) == (48, 24)  # type: ignore[attr-defined]
    assert "--cpu-bind=depth" in plan.argv  # type: ignore[attr-defined]


def test_oversubscribed_cpu_list_too_short_is_passed_as_given() -> None:
    """A 12-entry cpu list for 24 ranks is valid PALS input: passed through, and the dry run says so."""
    plan = render(aurora(), ppn=24, oversubscribe=True)
    assert f"--cpu-bind={AURORA_CPUS}" in plan.argv  # type: ignore[attr-defined]
    assert "12 entries for ppn=24: passed as given" in plan.provenance["cpu_bind"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("ppn", [1, 4, 6, 12])
def test_cpu_list_cut_to_ppn(ppn: int) -> None:
    plan = render(aurora(), ppn=ppn)
    binding = next(a for a in plan.argv if a.startswith("--cpu-bind="))  # type: ignore[attr-defined]
    entries = binding.removeprefix("--cpu-bind=list:").split(":")
    assert entries == AURORA_CPUS.removeprefix("list:").split(":")[:ppn]


def test_cut_cpu_bind_leaves_other_bindings() -> None:
    assert cut_cpu_bind("depth", 3) == "depth"
    assert cut_cpu_bind(None, 3) is None
    assert cut_cpu_bind("list:0:1:2", 2) == "list:0:1"


def test_cpu_only_allocation_defaults_to_one_rank_per_host() -> None:
    spec = LaunchSpec(command=CMD, master_port=29500)
    plan = PBS().render(spec, aurora(3, accelerators=0))
    assert (plan.np, plan.ppn, plan.nhosts) == (3, 1, 3)


def test_no_command(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        PBS().render(LaunchSpec(master_port=1), aurora())
    assert_line(info.value, "no command", "ezpz launch -- python train.py")


# --- through the CLI: exit 2, one line, no traceback --------------------------


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (["-n", "-2", "--", "python3", "x.py"], ("np", "-2")),
        (["-n", "10", "-ppn", "4", "--", "python3", "x.py"], ("np=10", "ppn=4")),
        (["-x", "FOO", "--", "python3", "x.py"], ("KEY=VALUE", "'FOO'")),
        (["-n", "2"], ("no command",)),
        (["--hostfile", "/nonexistent/hosts", "--", "python3", "x.py"], ("hostfile not found", "/nonexistent/hosts")),
        (["--template", "../../etc/passwd", "--", "python3", "x.py"], ("not a template name", "../../etc/passwd")),
        (["--template", "auroa", "--", "python3", "x.py"], ("unknown template", "did you mean 'aurora'")),
        (["--scheduler", "pbss", "--", "python3", "x.py"], ("unknown scheduler", "did you mean 'pbs'")),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    args: list[str],
    parts: tuple[str, ...],
    no_job_env: None,
    capsys: pytest.CaptureFixture[str],
    fake_machine: Callable[..., Machine],
) -> None:
    fake_machine()
    assert main(["launch", "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err


def test_cli_empty_hostfile(tmp_path: Path, no_job_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# nobody\n\n")
    assert main(["launch", "--dry-run", "--hostfile", str(hosts), "--", "python3", "x.py"]) == 2
    assert "lists no hosts" in capsys.readouterr().err


def test_plan_launch_from_a_spec_object(tmp_path: Path, fake_machine: Callable[..., Machine]) -> None:
    fake_machine()
    hosts = tmp_path / "hosts"
    hosts.write_text("n1\nn2\n")
    plan = LaunchSpec(command=CMD, hostfile=hosts, ppn=2, master_port=29500).render({})
    assert plan.argv[:6] == ("mpiexec", "-n", "4", "-ppn", "2", "--hostfile")
    assert plan_launch(LaunchSpec(command=CMD, hostfile=hosts, ppn=2, master_port=29500), {}) == plan


def test_a_spec_from_layers_renders_with_its_layers_provenance(
    tmp_path: Path, fake_machine: Callable[..., Machine]
) -> None:
    fake_machine()
    hosts = tmp_path / "hosts"
    hosts.write_text("n1\nn2\n")
    layers = [
        ("config:run.toml", {"ppn": 2, "master_port": 29500}),
        ("flags", {"command": CMD, "hostfile": str(hosts)}),
    ]
    plan = LaunchSpec.from_layers(layers).render({})
    assert (plan.provenance["ppn"], plan.provenance["hostfile"]) == ("config:run.toml", "flags")


HINT = "valid: " + ", ".join(sorted(LaunchSpec.model_fields))


@pytest.mark.parametrize(
    ("layers", "line"),
    [
        (
            [("config:y.toml", {"np": 3, "ppn": 2, "command": CMD})],
            "invalid spec in y.toml: np=3 is not divisible by ppn=2; use -n 2 or -n 4, or -ppn 1 or -ppn 3",
        ),
        (
            [("flags", {"np": 3, "ppn": 2, "command": CMD})],
            "invalid spec: np=3 is not divisible by ppn=2; use -n 2 or -n 4, or -ppn 1 or -ppn 3",
        ),
        (
            [("flags", {"np": 0, "command": CMD}), ("config:y.toml", {"ppn": 1})],
            "invalid np (from flags): Input should be greater than or equal to 1 (given 0)",
        ),
        (
            [("config:x.toml", {"Np": 2})],
            f"unknown key 'Np' in x.toml (given 2); {HINT}; did you mean 'np'?",
        ),
        ([("flags", {"nodes_x": 2})], f"unknown key 'nodes_x' (from flags) (given 2); {HINT}"),
        ([("flags", {"Ppn-": 2})], f"unknown key 'Ppn-' (from flags) (given 2); {HINT}"),
    ],
)
def test_an_invalid_layer_is_named_in_the_full_line(layers: list, line: str) -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec.from_layers(layers)
    assert info.value.line() == line


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("N-P", None),
        ("nprocs", "np"),
        (" Ppn ", "ppn"),
        ("accelerators-per-node", "accelerators_per_node"),
        ("Procs-Per-Node", "ppn"),
    ],
)
def test_field_hint_normalises_case_dashes_and_spaces(key: str, meant: str | None) -> None:
    from ezpz.model.spec import field_hint

    assert field_hint(key) == HINT + (f"; did you mean {meant!r}?" if meant else "")


def test_config_file_errors_in_full(tmp_path: Path) -> None:
    cases = {
        "missing.toml": None,
        "dir": "",
        "bad.toml": "np = [\n",
        "unknown.toml": "nprocs = 4\n",
    }
    for name, text in cases.items():
        if text == "":
            (tmp_path / name).mkdir()
        elif text is not None:
            (tmp_path / name).write_text(text)
    lines = {}
    for name in cases:
        with pytest.raises(SpecError) as info:
            load_config(tmp_path / name)
        lines[name] = info.value.line()
    assert (
        lines["missing.toml"]
        == f"config file not found (given {str(tmp_path / 'missing.toml')!r}); give a TOML file of LaunchSpec fields"
    )
    assert lines["dir"] == f"config file is not readable (given {str(tmp_path / 'dir')!r}); IsADirectoryError"
    assert lines["bad.toml"].startswith("config file is not valid TOML: ")
    assert (
        lines["unknown.toml"]
        == f"unknown key 'nprocs' in {tmp_path / 'unknown.toml'} (given 4); {HINT}; did you mean 'np'?"
    )


def test_a_nested_error_names_its_dotted_path() -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(command=CMD, launcher_flags=[1])  # type: ignore[list-item]
    assert info.value.line() == "invalid launcher_flags.0: Input should be a valid string (given 1)"


def test_render_carries_the_run_settings_into_the_plan(tmp_path: Path) -> None:
    spec = LaunchSpec(
        command=CMD,
        np=2,
        ppn=2,
        tag=False,
        ranks="0,1",
        run_dir=tmp_path / "run",
        stop_grace=5.0,
        timeout=30.0,
        retries=2,
        master_port=29400,
        hostfile=tmp_path / "hosts",
    )
    plan = PBS().render(spec, Allocation(scheduler="pbs", hosts=("a", "b"), source="PBS_NODEFILE=/nodes"))
    assert (plan.tag, plan.console_ranks, plan.run_dir) == (False, "0,1", str(tmp_path / "run"))
    assert (plan.stop_grace, plan.timeout, plan.retries) == (5.0, 30.0, 2)
    # the dry run's spec: JSON values, the command left out (it is in argv), the accelerators counted
    assert "command" not in plan.spec
    assert plan.spec["hostfile"] == str(tmp_path / "hosts") and plan.spec["run_dir"] == str(tmp_path / "run")
    assert plan.spec["accelerators_per_node"] == 0 and plan.spec["np"] == 2
    assert plan.provenance["launcher"] == "default for pbs" and plan.provenance["hosts"] == "PBS_NODEFILE=/nodes"


RENDER_JOB = Allocation(scheduler="pbs", hosts=("a", "b"), source="S", cpus=16)


def test_render_refuses_no_command_and_an_unknown_launcher_naming_its_layer() -> None:
    with pytest.raises(SpecError) as info:
        PBS().render(LaunchSpec(command=[]), RENDER_JOB)
    assert info.value.line() == "no command to launch; put it after --: ezpz launch -- python train.py"
    with pytest.raises(SpecError) as info:
        PBS().render(LaunchSpec.from_layers([("flags", {"command": CMD, "launcher": "mpich3"})]), RENDER_JOB)
    assert info.value.line() == "unknown launcher (from flags) (given 'mpich3'); valid: hydra, openmpi, pals, srun"


def test_render_env_defaults_and_the_supervised_ranks_threads() -> None:
    plan = PBS().render(LaunchSpec(command=CMD, np=4, ppn=2), RENDER_JOB)
    assert plan.env == {
        "MASTER_ADDR": "a",
        "MASTER_PORT": "29500",
        "EZPZ_LAUNCH_ID": "local-29500",
        "EZPZ_LOCAL_WORLD_SIZE": "2",
        "EZPZ_DUMP_SIGNAL": "ALRM",
        "EZPZ_OMP_NUM_THREADS": "8",
    }
    crowded = PBS().render(LaunchSpec(command=CMD, np=64, ppn=32, oversubscribe=True), RENDER_JOB)
    assert crowded.env["EZPZ_OMP_NUM_THREADS"] == "1"  # at least one thread per rank
    plain = PBS().render(LaunchSpec(command=CMD, np=4, ppn=2, rank_env=False), RENDER_JOB)
    assert plain.argv == ("mpiexec", "--envall", "--line-buffer", "--np=4", "--ppn=2", *CMD)
    assert "EZPZ_DUMP_SIGNAL" not in plain.env and not plain.supervise


@pytest.mark.parametrize(
    ("flags", "added"), [([], True), (["-K1"], False), (["--kill-on-bad-exit=0"], False), (["-k"], True)]
)
def test_supervised_srun_stops_the_step_on_a_failed_task_unless_the_flags_choose(flags: list[str], added: bool) -> None:
    plan = PBS().render(LaunchSpec(command=CMD, np=4, ppn=2, launcher="srun", launcher_flags=flags), RENDER_JOB)
    assert ("--kill-on-bad-exit=1" in plan.argv) is added
    assert plan.argv[plan.argv.index("--label") + 1 : plan.argv.index("sh")] == (
        ("--kill-on-bad-exit=1", *flags) if added else tuple(flags)
    )


def test_the_device_mask_names_its_layer() -> None:
    spec = LaunchSpec.from_layers([("flags", {"command": CMD, "np": 4, "ppn": 2, "device_mask": "cuda"})])
    plan = PBS().render(spec, Allocation(scheduler="pbs", hosts=("a", "b"), accelerators=2))
    assert plan.provenance["device_mask"] == "flags"
    assert (plan.env["EZPZ_DEVICE_VAR"], plan.env["EZPZ_DEVICE_MAP"]) == ("CUDA_VISIBLE_DEVICES", "0 1")
    direct = PBS().render(LaunchSpec(command=CMD, np=4, ppn=2, device_mask="cuda", accelerators_per_node=2), RENDER_JOB)
    assert direct.provenance["device_mask"] == "spec"


def test_merge_skips_unset_values_and_empty_env_or_flags_without_stopping() -> None:
    layers = [("a", {"np": None, "env": [], "launcher_flags": [], "ppn": 2}), ("b", {"env": {"X": "1"}, "tag": False})]
    assert merge_layers(layers) == ({"ppn": 2, "env": {"X": "1"}, "tag": False}, {"ppn": "a", "env": "b", "tag": "b"})


def test_an_env_item_without_equals_in_full() -> None:
    with pytest.raises(SpecError) as info:
        LaunchSpec(command=CMD, env=["FOO"])
    assert info.value.line() == "environment entry is not KEY=VALUE (given 'FOO'); write -x NAME=value"


def test_render_and_run_use_the_environment_given(
    tmp_path: Path, fake_machine: Callable[..., Machine], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_machine()
    hosts = tmp_path / "hosts"
    hosts.write_text("n1\nn2\n")
    spec = LaunchSpec(command=CMD, hostfile=hosts, master_port=29500)
    assert spec.render({"EZPZ_PPN": "2"}).ppn == 2
    ran: list = []
    monkeypatch.setattr("ezpz.launch.execute.execute", lambda plan: ran.append(plan) or 7)
    assert spec.run({"EZPZ_PPN": "3"}) == 7
    assert [plan.ppn for plan in ran] == [3]


def test_a_cut_cpu_list_says_so_where_it_came_from() -> None:
    plan = PBS().render(LaunchSpec(command=CMD, np=4, ppn=2, cpu_bind="list:1:2:3"), RENDER_JOB)
    assert plan.provenance["cpu_bind"] == "spec; list of 3 entries cut to ppn=2"
    assert "--cpu-bind=list:1:2" in plan.argv


def test_a_scheduler_without_batch_system_refuses_submit_and_requeue_in_full() -> None:
    from ezpz.schedulers.local import Local

    with pytest.raises(SchedulerError) as info:
        Local().batch_header(None, None, None, None, None)  # type: ignore[arg-type]
    assert info.value.line() == "the local scheduler has no batch system to submit to (given 'local')"
    with pytest.raises(SchedulerError) as info:
        Local().batch_requeue("job.sh")
    assert info.value.line() == "the local scheduler cannot requeue a job (given '--requeue'); submit without --requeue"
