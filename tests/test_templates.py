"""Launch templates: the built-ins, lookup by name or path, hostname auto-detection, bad names.

PBS jobs are mocked through their environment (``PBS_JOBID`` and a
``PBS_NODEFILE`` under tmp_path); the hostname through the ``fake_machine`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ezpz.errors import TemplateError
from ezpz.launch.machine import Machine
from ezpz.launch.resolve import plan_launch
from ezpz.launch.templates import (
    builtin_template_dir,
    find_template,
    load_template,
    template_files,
    templates_for_host,
)
from ezpz.model.spec import LaunchSpec
from ezpz.model.template import Template
from ezpz.plugins.manager import schedulers

CMD = ["python3", "train.py"]
#: sites.md: each site's scheduler, accelerators per node, launcher and a real hostname.
SITES = {
    "aurora": ("pbs", 12, "pals", "x4000c0s0b0n0"),
    "sunspot": ("pbs", 12, "pals", "x1921c0s0b0n0"),
    "polaris": ("pbs", 4, "pals", "x3005c0s13b0n0"),
    "sophia": ("pbs", 8, "openmpi", "sophia-gpu-01"),
    "perlmutter": ("slurm", 4, "srun", "nid001234"),
    "frontier": ("slurm", 8, "srun", "frontier01234"),
}


def test_builtin_templates_present() -> None:
    assert {"local", *SITES} <= set(template_files())
    assert all(path.parent == builtin_template_dir() for name, path in template_files().items() if name in SITES)


@pytest.mark.parametrize("name", sorted(SITES))
def test_site_template_facts(name: str) -> None:
    scheduler, accelerators, launcher, hostname = SITES[name]
    template = find_template(name)
    assert isinstance(template, Template)
    assert template.name == name and template.description
    assert template.scheduler == scheduler
    assert template.defaults["accelerators_per_node"] == accelerators
    assert template.defaults["launcher"] == launcher
    assert template.matches_host(hostname) is not None
    assert template.matches_host(f"{hostname}.hsn.cm.example.gov") is not None, "FQDNs match by short name"
    assert templates_for_host(hostname, scheduler) == (template, template.matches_host(hostname))


@pytest.mark.parametrize("name", sorted(template_files()))
def test_every_template_is_valid(name: str) -> None:
    template = find_template(name)
    assert template.scheduler in schedulers()
    LaunchSpec(**template.defaults)
    assert "command" not in template.defaults and "template" not in template.defaults


@pytest.mark.parametrize("name", sorted(SITES))
def test_site_hostnames_do_not_cross_match(name: str) -> None:
    hostname = SITES[name][3]
    for other in SITES:
        if other != name:
            assert find_template(other).matches_host(hostname) is None, f"{other} claims {hostname}"


def test_no_auto_template_outside_the_sites_scheduler() -> None:
    assert templates_for_host("nid001234", "local") is None
    assert templates_for_host("x4000c0s0b0n0", "slurm") is None
    assert templates_for_host("my-laptop", "local") is None


def test_perlmutter_login_nodes_match() -> None:
    assert find_template("perlmutter").matches_host("login01") == "login*"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("auroa", "aurora"), ("polarsi", "polaris"), ("Frontier", "frontier"), ("perlmuter", "perlmutter")],
)
def test_unknown_template_suggests_the_closest(name: str, suggestion: str) -> None:
    with pytest.raises(TemplateError) as info:
        find_template(name)
    line = info.value.line()
    assert "unknown template" in line and repr(name) in line
    assert f"did you mean {suggestion!r}" in line
    assert "valid: " in line and "aurora" in line and "local" in line


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "aurora/../polaris", "..", ".hidden", "a b", "aurora;rm", "x" * 65]
)
def test_names_are_names(name: str) -> None:
    with pytest.raises(TemplateError) as info:
        find_template(name)
    line = info.value.line()
    assert "not a template name" in line and repr(name) in line
    assert "letters, digits" in line


def test_traversal_with_toml_suffix_is_just_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError) as info:
        find_template("../../etc/passwd.toml")
    assert "not found" in info.value.line()


def _write(tmp: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_template_from_a_path(tmp_path: Path) -> None:
    path = _write(tmp_path, 'description = "mine"\nscheduler = "local"\n[defaults]\nlauncher = "openmpi"\nppn = 2\n')
    template = find_template(str(path))
    assert (template.name, template.scheduler, template.defaults) == (
        "site",
        "local",
        {"launcher": "openmpi", "ppn": 2},
    )
    assert template.path == str(path)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ('scheduler = "local"\n[defaults]\nnpp = 2\n', ("defaults", "npp", "did you mean 'np'")),
        ('scheduler = "local"\n[defaults]\ncommand = ["x"]\n', ("defaults", "command")),
        ('scheduler = "local"\n[defaults]\nppn = -2\n', ("defaults", "ppn")),
        ('scheduler = "local"\nhostname = ["x*"]\n', ("hostname",)),
        ('description = "no scheduler"\n', ("scheduler",)),
        ("scheduler = [\n", ("not valid TOML",)),
    ],
)
def test_bad_template_file(tmp_path: Path, text: str, parts: tuple[str, ...]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TemplateError) as info:
        load_template(path)
    line = info.value.line()
    assert "\n" not in line and str(path) in line
    for part in parts:
        assert part in line


def test_missing_template_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        find_template(str(tmp_path / "nope.toml"))
    assert "not found" in info.value.line() and "nope.toml" in info.value.line()


# --- through the resolution path ---------------------------------------------


@pytest.fixture
def aurora_job(fake_machine: Callable[..., Machine], pbs_job: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A mocked 2-node Aurora PBS job; returns its environment."""
    fake_machine()
    return pbs_job(EZPZ_MASTER_PORT="29500")


def test_auto_template_is_chosen_and_said(aurora_job: dict[str, str], fake_machine: Callable[..., Machine]) -> None:
    fake_machine(hostname="x4000c0s0b0n0.hostmgmt.cm.aurora.alcf.anl.gov")
    plan = plan_launch([("flags", {"command": CMD})], aurora_job)
    assert plan.template == "aurora"
    assert "auto" in plan.provenance["template"] and "x4*c*s*b*n*" in plan.provenance["template"]
    assert plan.provenance["cpu_bind"] == "template:aurora"
    assert (plan.np, plan.ppn) == (24, 12)


def test_no_auto_template_on_an_unknown_host(aurora_job: dict[str, str], fake_machine: Callable[..., Machine]) -> None:
    fake_machine(hostname="cpu-node-01")
    plan = plan_launch([("flags", {"command": CMD})], aurora_job)
    assert plan.template is None
    assert (plan.np, plan.ppn, plan.launcher) == (2, 1, "pals")


def test_explicit_template_wins_over_hostname(aurora_job: dict[str, str], fake_machine: Callable[..., Machine]) -> None:
    fake_machine(hostname="x4000c0s0b0n0")
    plan = plan_launch([("flags", {"command": CMD, "template": "polaris"})], aurora_job)
    assert plan.template == "polaris"
    assert plan.provenance["template"] == "flags"
    assert "--depth=8" in plan.argv and (plan.np, plan.ppn) == (8, 4)


def test_template_from_environment(aurora_job: dict[str, str], fake_machine: Callable[..., Machine]) -> None:
    fake_machine(hostname="cpu-node-01")
    plan = plan_launch([("flags", {"command": CMD})], {**aurora_job, "EZPZ_TEMPLATE": "sunspot"})
    assert plan.template == "sunspot"
    assert plan.provenance["template"] == "env"


def test_template_with_a_hostfile_outside_its_scheduler_job(
    tmp_path: Path, fake_machine: Callable[..., Machine]
) -> None:
    """`--template aurora --hostfile H` outside a PBS job: the hint of the PBS error says to pass --hostfile."""
    hosts = tmp_path / "hosts"
    hosts.write_text("x4000c0s0b0n0\nx4000c0s1b0n0\n")
    fake_machine(hostname="aurora-uan-0010")
    plan = plan_launch(
        [("flags", {"command": CMD, "template": "aurora", "hostfile": str(hosts), "master_port": 29500})], {}
    )
    assert (plan.np, plan.ppn, plan.nhosts) == (24, 12, 2)
    assert f"--hostfile={hosts}" in plan.argv
