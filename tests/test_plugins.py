"""Plugin discovery through the ``ezpz`` entry-point group, with real installed metadata.

Each test writes a tiny distribution (``*.dist-info`` with ``entry_points.txt``)
under tmp_path and runs ezpz in a fresh interpreter with it on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ezpz.plugins.manager import plugin_report, schedulers

PLUGIN = textwrap.dedent(
    """
    from pathlib import Path
    from ezpz.plugins.hookspecs import hookimpl
    from ezpz.model.allocation import Allocation
    from ezpz.schedulers.base import Scheduler

    class MySite(Scheduler):
        name = "mysite"
        default_launcher = "hydra"
        def affinity(self, environ):
            return 2 if environ.get("MYSITE_JOB") else -1
        def allocation(self, environ):
            return Allocation(scheduler=self.name, hosts=("m1", "m2"), job_id=environ.get("MYSITE_JOB"), source="mysite")

    class FakePBS(Scheduler):
        name = "pbs"

    @hookimpl
    def ezpz_register_schedulers(registry):
        registry.add(MySite)
        registry.add(FakePBS)

    @hookimpl
    def ezpz_template_dirs():
        return [Path(__file__).parent / "mysite_templates"]
    """
)


def install(tmp_path: Path, name: str, module: str, source: str) -> None:
    (tmp_path / f"{module}.py").write_text(source)
    info = tmp_path / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ezpz]\n{name} = {module}\n")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "ezpz", *args], capture_output=True, text=True, env=environ, timeout=60
    )


def test_builtin_adapters_are_plugins():
    assert {"pbs", "slurm", "local"} <= set(schedulers())
    names = {p.name for p in plugin_report()}
    assert {"ezpz.schedulers.pbs", "ezpz.schedulers.slurm", "ezpz.schedulers.local"} <= names


def test_third_party_scheduler_and_templates_are_discovered(tmp_path):
    install(tmp_path, "mysite", "mysite_plugin", PLUGIN)
    tdir = tmp_path / "mysite_templates"
    tdir.mkdir()
    (tdir / "mysite.toml").write_text(
        'description = "My site"\nscheduler = "mysite"\n[defaults]\naccelerators_per_node = 2\n'
    )
    (tdir / "aurora.toml").write_text('description = "impostor"\nscheduler = "mysite"\n')
    listed = run(tmp_path, "templates", "list")
    assert "mysite" in listed.stdout and "impostor" not in listed.stdout
    done = run(
        tmp_path, "launch", "--dry-run", "--json", "--template", "mysite", "--", "python", "x.py", MYSITE_JOB="42"
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["scheduler"] == "mysite"
    assert plan["hosts"] == ["m1", "m2"] and plan["np"] == 4 and plan["ppn"] == 2
    # Auto-detection by affinity picks the plugin inside its job ...
    assert json.loads(run(tmp_path, "launch", "--json", "--", "x", MYSITE_JOB="42").stdout)["scheduler"] == "mysite"
    # ... and the plugin's "pbs" did not replace the built-in one.
    probe = "from ezpz.plugins.manager import schedulers; print(type(schedulers()['pbs']).__module__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    assert out.stdout.strip() == "ezpz.schedulers.pbs"
    # ... and ezpz doctor says the impostor was refused.
    report = json.loads(run(tmp_path, "doctor", "--json").stdout)
    refused = [c for c in report["checks"] if c["name"] == "plugin scheduler"]
    assert [c["details"]["refused"] for c in refused] == ["mysite_plugin.FakePBS"], refused
    assert refused[0]["status"] == "warning"


def test_broken_plugin_is_skipped_and_reported(tmp_path):
    install(tmp_path, "broken", "broken_plugin", "raise RuntimeError('boom')\n")
    done = run(tmp_path, "launch", "--dry-run", "-n", "1", "--", "true")
    assert done.returncode == 0
    assert "plugin broken failed to load" in done.stderr
    probe = "from ezpz.plugins.manager import plugin_report; print([(p.name, p.version, p.error) for p in plugin_report() if p.error])"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    assert "('broken', '1.2.3', 'RuntimeError: boom')" in out.stdout


def test_every_hookspec_is_documented():
    import inspect

    from ezpz.plugins import hookspecs

    specs = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("ezpz_")]
    assert len(specs) == 3
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert len(doc.splitlines()) >= 3, spec.__name__
