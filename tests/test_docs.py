"""The docs stay true: generated CLI page, runnable snippets, rendered commands, reference plugin.

* ``docs/cli.md`` must equal what ``docs/gen_cli.py`` renders from the Typer app.
* Every ```python block preceded by ``<!-- runnable -->`` runs, in a fresh
  interpreter with a world size of 1 on CPU, in a temporary directory.
* ``docs/getting-started.md``: its ``<!-- file: NAME -->`` blocks are written
  out and launched for real on 2 ranks; the Slurm and PBS command lines it
  shows are what ezpz renders for those jobs.  There is no PBS server here,
  so the PBS job is its environment (``PBS_JOBID``, ``PBS_NODEFILE``), as in
  every PBS test.
* ``examples/plugin_mysite`` is pip-installed into a temporary target and
  discovered through its entry point by ``ezpz templates list``, ``ezpz
  launch --dry-run --json`` and the doctor checks.
* ``docs/troubleshooting.md`` links only to doctor checks that exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ezpz.launch.supervise import RANK_SHIM

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLUGIN = ROOT / "examples" / "plugin_mysite"
#: How the docs write the rank shim's path (it lies inside the installed package).
SHIM_SHOWN = "/path/to/ezpz/launch/rank.sh"

# Variables that would make a snippet think it is one rank of a bigger job.
_JOB_VARS = re.compile(
    r"^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|PMI_.*|PMIX_.*|OMPI_.*|PALS_.*|"
    r"SLURM_.*|PBS_.*|EZPZ_.*|WANDB_.*|MPI_LOCALRANKID|MPI_LOCALNRANKS)$"
)


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any job or rank variables, W&B off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _JOB_VARS.match(k)}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["WANDB_MODE"] = "disabled"
    env.update(extra)
    return env


def blocks(page: str, marker: str) -> list[tuple[str, str]]:
    """Return (marker argument, code) for every fenced block right after ``<!-- marker[: arg] -->``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    pattern = re.compile(rf"<!-- {marker}(?::\s*(\S+))? -->\n```[^\n]*\n(.*?)\n```", re.S)
    return [(m.group(1) or "", m.group(2)) for m in pattern.finditer(text)]


# ------------------------------------------------------------------ CLI page


def test_cli_md_matches_the_typer_app():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    expected = gen_cli.render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == expected, "docs/cli.md is stale: run python docs/gen_cli.py"
    # Every command of the app has its section.
    from typer.main import get_command

    from ezpz.cli import app

    for name in get_command(app).commands:  # type: ignore[attr-defined]
        assert f"## `ezpz {name}`" in expected


# ----------------------------------------------------------- runnable snippets

RUNNABLE = [
    (page, i, code) for page in ("api.md", "getting-started.md") for i, (_, code) in enumerate(blocks(page, "runnable"))
]


def test_pages_have_runnable_snippets():
    pages = {page for page, _, _ in RUNNABLE}
    assert pages == {"api.md", "getting-started.md"}
    assert sum(1 for page, _, _ in RUNNABLE if page == "api.md") >= 5


@pytest.mark.parametrize(("page", "index", "code"), RUNNABLE, ids=[f"{p}-{i}" for p, i, _ in RUNNABLE])
def test_runnable_snippet(page: str, index: int, code: str, tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"{page} snippet {index} failed:\n{code}\n--- stderr:\n{done.stderr[-3000:]}"


# ------------------------------------------------------------ getting started


def write_files(tmp_path: Path) -> None:
    files = blocks("getting-started.md", "file")
    assert {name for name, _ in files} == {"train.py", "ezpz.toml"}
    for name, code in files:
        (tmp_path / name).write_text(code + "\n", encoding="utf-8")


def ezpz(*args: str, cwd: Path, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ezpz", *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.torch
def test_getting_started_laptop_launch_trains(tmp_path: Path):
    pytest.importorskip("torch")
    write_files(tmp_path)
    (command,) = [code for _, code in blocks("getting-started.md", "run")]
    argv = command.splitlines()[0].removeprefix("$ ").split()
    assert argv[:2] == ["ezpz", "launch"]
    done = ezpz(*argv[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = done.stdout + done.stderr
    assert "world_size=2" in logged
    losses = [float(x) for x in re.findall(r"step=\d+ loss=([-+.\deE]+)", logged)]
    assert len(losses) == 5 and losses[-1] < losses[0] / 100
    assert (tmp_path / "outputs" / "getting-started" / "report.md").is_file()


def test_getting_started_config_file_is_valid_and_used(tmp_path: Path):
    write_files(tmp_path)
    assert ezpz("spec", "validate", "ezpz.toml", cwd=tmp_path).returncode == 0
    plan = json.loads(ezpz("launch", "-c", "ezpz.toml", "-n", "2", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert plan["argv"][-2:] == ["python3", "train.py"]
    assert plan["env"]["OMP_NUM_THREADS"] == "1" and plan["timeout"] == 600 and plan["retries"] == 1
    assert plan["provenance"]["timeout"] == "config:ezpz.toml"


def shown_command(name: str) -> str:
    (code,) = [code for tag, code in blocks("getting-started.md", "expect") if tag == name]
    return code.splitlines()[-1]


def test_getting_started_slurm_command_is_what_ezpz_renders(tmp_path: Path):
    # The variables salloc -N2 --ntasks-per-node=1 sets on the local cluster.
    done = ezpz(
        "launch",
        "--dry-run",
        "--json",
        "--",
        "python3",
        "train.py",
        cwd=tmp_path,
        SLURM_JOB_ID="34",
        SLURM_JOB_NODELIST="n[1-2]",
        SLURM_NTASKS_PER_NODE="1",
    )
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)["command"].replace(str(RANK_SHIM), SHIM_SHOWN)
    assert rendered == shown_command("slurm")


def test_getting_started_pbs_command_is_what_ezpz_renders(tmp_path: Path):
    aux = tmp_path / "aux"
    aux.mkdir()
    nodefile = aux / "8123456.aurora-pbs-0001"
    nodefile.write_text("x4000c0s0b0n0\nx4000c0s0b0n1\n")
    done = ezpz(
        "launch",
        "--template",
        "aurora",
        "--dry-run",
        "--json",
        "--",
        "python3",
        "train.py",
        cwd=tmp_path,
        PBS_JOBID="8123456.aurora-pbs-0001",
        PBS_NODEFILE=str(nodefile),
    )
    assert done.returncode == 0, done.stderr
    rendered = (
        json.loads(done.stdout)["command"].replace(str(RANK_SHIM), SHIM_SHOWN).replace(str(aux), "/var/spool/pbs/aux")
    )
    assert rendered == shown_command("pbs")


# ------------------------------------------------------------ reference plugin


@pytest.fixture(scope="module")
def plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target`` the reference plugin (a real wheel build)."""
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-src") / "plugin_mysite"
    shutil.copytree(PLUGIN, build)  # build outside the repository: no artefacts in examples/
    # Offline when the build backend is already here; otherwise pip fetches it.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            *isolation,
            "--target",
            str(target),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "ezpz_mysite" / "templates" / "mysite.toml").is_file()
    return target


def with_plugin(target: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return ezpz(*args, cwd=cwd, PYTHONPATH=str(target), **env)


def test_reference_plugin_template_is_listed(plugin_target: Path, tmp_path: Path):
    listed = with_plugin(plugin_target, "templates", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("mysite "))
    assert row.split()[1] == "mysite" and "MySite" in row
    # Without the plugin on the path there is no such template.
    assert "mysite" not in ezpz("templates", "list", cwd=tmp_path).stdout


def test_reference_plugin_scheduler_renders_the_job(plugin_target: Path, tmp_path: Path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("ms001\nms002\n")
    job = {"MYSITE_JOB_ID": "4711.mbs", "MYSITE_NODEFILE": str(nodefile), "MYSITE_GPUS_PER_NODE": "4"}
    done = with_plugin(
        plugin_target,
        "launch",
        "--dry-run",
        "--json",
        "--scheduler",
        "mysite",
        "--",
        "python3",
        "train.py",
        cwd=tmp_path,
        **job,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["scheduler"] == "mysite" and plan["launcher"] == "hydra"
    assert (plan["np"], plan["ppn"], plan["hosts"]) == (8, 4, ["ms001", "ms002"])
    assert plan["argv"][:7] == ["mpiexec", "-n", "8", "-ppn", "4", "--hostfile", str(nodefile)]
    assert plan["env"]["MASTER_ADDR"] == "ms001" and plan["env"]["EZPZ_LAUNCH_ID"].startswith("4711.mbs-")
    # Detected by affinity inside its job, and the template's defaults apply.
    auto = json.loads(
        with_plugin(plugin_target, "launch", "--json", "-t", "mysite", "--", "x", cwd=tmp_path, **job).stdout
    )
    assert auto["scheduler"] == "mysite" and auto["env"]["NCCL_SOCKET_IFNAME"] == "ib0"
    assert "-bind-to" in auto["argv"] and auto["argv"][auto["argv"].index("-bind-to") + 1] == "core"
    # Outside its job, asking for it explains what is missing.
    bad = with_plugin(plugin_target, "launch", "--dry-run", "--scheduler", "mysite", "--", "x", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: MYSITE_NODEFILE is not set")


def test_reference_plugin_doctor_check_runs(plugin_target: Path, tmp_path: Path):
    code = (
        "import json; from ezpz.doctor.checks import all_checks; from ezpz.model.checks import DoctorContext\n"
        "import os\n"
        "check = next(c for c in all_checks() if c.name == 'mysite nodefile')\n"
        "print(json.dumps([check.run(DoctorContext(os.environ)).status, check.run(DoctorContext({'MYSITE_JOB_ID': '1'})).status]))\n"
    )
    nodefile = tmp_path / "nodes"
    nodefile.write_text("ms001\n")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(PYTHONPATH=str(plugin_target), MYSITE_JOB_ID="1", MYSITE_NODEFILE=str(nodefile)),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["ok", "error"]


# ------------------------------------------------------------- troubleshooting


def test_troubleshooting_names_real_doctor_checks():
    from ezpz.doctor.checks import BUILTIN_CHECKS

    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    named = set(re.findall(r"doctor check: `([^`]+)`", text))
    assert named, "troubleshooting.md links no doctor check"
    assert named <= {c.name for c in BUILTIN_CHECKS}
    symptoms = [line for line in text.splitlines() if line.startswith("| ") and "doctor" in line]
    assert len(symptoms) >= 6
