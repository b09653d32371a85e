"""Smoke tests of every launch-core command, and the one-line error contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ezpz.cli import app, main

runner = CliRunner()


def test_version_and_module_entry():
    out = subprocess.run([sys.executable, "-m", "ezpz", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("ezpz ")


def test_launch_dry_run_json_has_the_keys():
    result = runner.invoke(app, ["launch", "--dry-run", "--json", "-n", "2", "--", "python", "t.py"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    for key in ("scheduler", "launcher", "np", "ppn", "nhosts", "hosts", "argv", "env", "provenance"):
        assert key in plan
    assert plan["argv"][-2:] == ["python", "t.py"] and plan["np"] == 2
    assert plan["provenance"]["np"] == "flags"


def test_launch_dry_run_text_shows_provenance(monkeypatch):
    monkeypatch.setenv("EZPZ_PPN", "2")
    result = runner.invoke(app, ["launch", "--dry-run", "-nh", "1", "--", "python", "t.py"])
    assert result.exit_code == 0, result.output
    assert "ppn" in result.stdout and "[env]" in result.stdout and "[flags]" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].endswith("python t.py")


def test_unknown_options_before_dashdash_go_to_the_launcher():
    result = runner.invoke(
        app, ["launch", "--json", "-n", "1", "--genvall", "-launcher", "fork", "--", "python", "t.py", "--help"]
    )
    argv = json.loads(result.stdout)["argv"]
    # After mpiexec -n 1 and ezpz's own line labels (-prepend-pattern PATTERN).
    assert argv[5:8] == ["--genvall", "-launcher", "fork"] and argv[-3:] == ["python", "t.py", "--help"]


def test_templates_and_spec_commands(tmp_path):
    listed = runner.invoke(app, ["templates", "list"])
    assert listed.exit_code == 0
    for name in ("aurora", "sunspot", "polaris", "sophia", "perlmutter", "frontier", "local"):
        assert name in listed.stdout
    shown = runner.invoke(app, ["templates", "show", "polaris"])
    assert 'cpu_bind = "depth"' in shown.stdout
    schema = json.loads(runner.invoke(app, ["spec", "schema"]).stdout)
    assert schema["additionalProperties"] is False and "np" in schema["properties"]
    config = tmp_path / "ezpz.toml"
    config.write_text('template = "aurora"\nnp = 24\ncommand = "python train.py"\n')
    validated = runner.invoke(app, ["spec", "validate", str(config)])
    assert validated.exit_code == 0 and '"np": 24' in validated.stdout


def test_config_file_layer_sits_between_template_and_flags(tmp_path, monkeypatch):
    config = tmp_path / "ezpz.toml"
    config.write_text('np = 4\nenv = { A = "1" }\nlauncher_flags = ["--verbose"]\n')
    monkeypatch.setenv("EZPZ_NP", "2")
    result = runner.invoke(app, ["launch", "--json", "-c", str(config), "-x", "B=2", "--", "t"])
    plan = json.loads(result.stdout)
    assert plan["np"] == 2 and plan["provenance"]["np"] == "env"
    assert plan["env"]["A"] == "1" and plan["env"]["B"] == "2"
    assert "--verbose" in plan["argv"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["launch", "--template", "auroa", "--", "x"], "did you mean 'aurora'"),
        (["launch", "--template", "../../etc/passwd", "--", "x"], "not a template name"),
        (["launch", "-n", "-3", "--", "x"], "invalid np"),
        (["launch", "-n", "2"], "no command to launch"),
        (["launch", "-x", "NOEQUALS", "--", "x"], "not KEY=VALUE"),
        (["launch", "-n", "3", "-ppn", "2", "--", "x"], "not divisible"),
        (["launch", "--hostfile", "/nonexistent/hosts", "--", "x"], "hostfile not found"),
        (["launch", "--scheduler", "slurmm", "--", "x"], "did you mean 'slurm'"),
        (["launch", "-n", "notanumber", "--", "x"], "valid integer"),
        (["templates", "show", "nope"], "unknown template"),
        (["spec", "validate", "/nonexistent.toml"], "config file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, needle):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in err


def test_site_template_is_chosen_by_hostname_inside_its_scheduler(fake_machine, pbs_job):
    """Mocked: a Polaris PBS job (its environment and nodefile; no PBS here) and the hostname (a fake machine)."""
    fake_machine(hostname="x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov")
    env = pbs_job(("x3005c0s13b0n0", "x3005c0s13b1n0"), "123.polaris-pbs-01", PATH="/usr/bin")
    from ezpz.launch.resolve import describe, plan_launch

    plan = plan_launch([("flags", {"command": ["python", "t.py"]})], env)
    assert plan.template == "polaris" and plan.np == 8 and plan.ppn == 4
    assert "--cpu-bind=depth" in plan.argv and "--depth=8" in plan.argv
    assert "auto: host x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov matches 'x3*c*s*b*n*'" in describe(plan)
    # The same hostname outside a PBS job does not pick the PBS template.
    assert plan_launch([("flags", {"command": ["t"]})], {"PATH": "/usr/bin"}).template is None


def test_switches_given_as_false_or_zero_still_override_lower_layers(tmp_path):
    config = tmp_path / "ezpz.toml"
    config.write_text("retries = 3\noversubscribe = true\n")
    plan = json.loads(
        runner.invoke(app, ["launch", "--json", "-c", str(config), "--retries", "0", "--no-rank-env", "--", "t"]).stdout
    )
    assert plan["retries"] == 0 and plan["provenance"]["retries"] == "flags"
    assert not any(word.endswith("rank.sh") for word in plan["argv"])
    # An unset --oversubscribe does not undo the config file's true.
    assert plan["spec"]["oversubscribe"] is True


def test_master_ports_are_distinct_and_below_the_ephemeral_range():
    from ezpz.net import free_port

    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(20000 <= p < low for p in ports)
