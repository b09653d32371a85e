"""``ezpz doctor``: healthy, warning and failing machines, driven by the environment
and executables on PATH.

Real: the MPICH ``mpiexec`` from the venv, mpi4py, the probes doctor runs.
Fakes (this machine has one MPI, MPICH 5.0.2, so the others are stand-ins):
``fake_bin`` writes shell scripts into tmp_path that print the ``--version`` text
of an MPI this machine lacks (Open MPI 4.1.4, an older MPICH, Slurm's ``srun``,
an unknown launcher) or that misbehave on purpose (start the program twice
without wiring ranks); each test using one says so.  torch's absence is mocked
through ``sys.modules``.  No GPU here: device checks see CPU only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ezpz.doctor.checks import BUILTIN_CHECKS, check_devices, check_scheduler, check_spec, check_wandb, mask
from ezpz.doctor.mpi import check_mpi4py, check_mpi_launcher, mpi_flavor
from ezpz.doctor.report import exit_code, results_json, run_checks
from ezpz.model.checks import Check, CheckResult, DoctorContext

VENV_BIN = str(Path(sys.executable).parent)
HYDRA = "HYDRA build details:\n    Version:                                 5.0.2\n"
OPENMPI = "mpiexec (OpenRTE) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n"


def fake_bin(tmp_path: Path, name: str, body: str) -> Path:
    """Write an executable ``name`` into tmp_path/bin and return the directory."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return bindir


def version_script(text: str, run: str = 'echo "unexpected: $*" >&2; exit 9') -> str:
    return f'if [ "$1" = "--version" ]; then printf %s \'{text}\'; exit 0; fi\n{run}\n'


def ctx(tmp_path: Path, path: str, deep: bool = False, **extra: str) -> DoctorContext:
    env = {"PATH": path, "HOME": str(tmp_path), "WANDB_MODE": "offline", **extra}
    return DoctorContext(environ=env, deep=deep, python_bin=None)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_flavors_from_real_version_texts() -> None:
    assert str(mpi_flavor(HYDRA)) == "MPICH 5.0.2"
    assert str(mpi_flavor(OPENMPI)) == "Open MPI 4.1.4"
    assert str(mpi_flavor("Open MPI v5.0.3, package: Open MPI ...")) == "Open MPI 5.0.3"
    assert str(mpi_flavor("MPICH Version:      5.0.2\nMPICH Release date: ...")) == "MPICH 5.0.2"
    assert str(mpi_flavor("Intel(R) MPI Library 2021.13 for Linux* OS")) == "Intel MPI 2021.13"
    assert str(mpi_flavor("slurm 23.02.7")) == "Slurm 23.02.7"
    assert mpi_flavor("bash: no such thing") is None


def test_healthy_machine_with_real_mpich(tmp_path: Path) -> None:
    results = run_checks(ctx(tmp_path, f"{VENV_BIN}:/usr/bin:/bin", deep=True), BUILTIN_CHECKS)
    found = by_name(results)
    assert found["mpi launcher"].status == "ok" and "MPICH 5.0.2" in found["mpi launcher"].message
    assert found["mpi4py"].status == "ok", found["mpi4py"]
    assert "ranks 0 and 1 of 2" in found["mpi4py"].message
    assert found["scheduler"].status == "ok" and found["scheduler"].details["adapter"] == "local"
    assert found["devices"].status == "ok" and found["devices"].details["backend"] == "gloo"
    assert found["wandb"].status == "ok"
    assert any(r.name.startswith("plugin ") for r in results)
    assert exit_code(results) == 0, [r for r in results if r.status != "ok"]


def test_launcher_and_library_mismatch_is_an_error(tmp_path: Path) -> None:
    """Fake: an ``mpiexec`` script that reports Open MPI 4.1.4 (mpi4py really loads MPICH)."""
    bindir = fake_bin(tmp_path, "mpiexec", version_script(OPENMPI))
    context = ctx(tmp_path, str(bindir))
    launcher = check_mpi_launcher(context)
    # The local adapter renders MPICH hydra's flags, which Open MPI's mpiexec does not take.
    assert launcher.status == "error" and launcher.message.endswith("which is Open MPI 4.1.4, not MPICH")
    lib = check_mpi4py(context)
    assert lib.status == "error"
    assert "mpi4py loads MPICH 5.0.2 but" in lib.message and "Open MPI 4.1.4" in lib.message
    assert "rebuild mpi4py" in lib.remedy


def test_version_skew_is_a_warning(tmp_path: Path) -> None:
    """Fake: an ``mpiexec`` script that reports MPICH 4.1.2."""
    bindir = fake_bin(tmp_path, "mpiexec", version_script(HYDRA.replace("5.0.2", "4.1.2")))
    result = check_mpi4py(ctx(tmp_path, str(bindir)))
    assert result.status == "warning" and "MPICH 4.1.2" in result.message


def test_deep_probe_catches_every_rank_rank_0_of_1(tmp_path: Path) -> None:
    """Fake: a launcher script that runs the probe twice as singletons (real mpi4py in each)."""
    # A launcher that starts the program twice without wiring ranks together:
    # each process initialises MPI as a singleton, the classic mismatch symptom.
    bindir = fake_bin(tmp_path, "mpiexec", version_script(HYDRA, 'shift 2\n"$@"\n"$@"'))
    result = check_mpi4py(ctx(tmp_path, str(bindir), deep=True))
    assert result.status == "error"
    assert "every rank is rank 0 of 1 (2 singletons)" in result.message


def test_no_launcher_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    context = ctx(tmp_path, str(tmp_path / "empty"))
    launcher = check_mpi_launcher(context)
    assert launcher.status == "error" and "pip install mpich" in launcher.remedy
    assert launcher.message == "mpiexec not found on PATH (the local adapter launches with it)"
    assert "cannot compare" in check_mpi4py(context).message
    assert exit_code([launcher]) == 1
    # ezpz launch also finds the mpiexec that `pip install mpich` put beside python.
    beside = DoctorContext(environ={"PATH": str(tmp_path / "empty")}, python_bin=VENV_BIN)
    assert check_mpi_launcher(beside).message.startswith(f"{VENV_BIN}/mpiexec: MPICH")


def test_slurm_job_prefers_srun(tmp_path: Path) -> None:
    """Fakes: ``srun`` and ``mpiexec`` scripts that only print their version texts."""
    bindir = fake_bin(tmp_path, "srun", version_script("slurm 23.02.7\n"))
    fake_bin(tmp_path, "mpiexec", version_script(HYDRA))
    job = ctx(tmp_path, str(bindir), SLURM_JOB_ID="7", SLURM_JOB_NODELIST="n[1-2]")
    assert check_mpi_launcher(job).message == f"{bindir}/srun: Slurm 23.02.7"
    assert check_mpi_launcher(ctx(tmp_path, str(bindir))).message == f"{bindir}/mpiexec: MPICH 5.0.2"


def test_unrecognised_launcher_is_a_warning(tmp_path: Path) -> None:
    """Fake: an ``mpiexec`` script that reports an unknown launcher."""
    bindir = fake_bin(tmp_path, "mpiexec", version_script("frobnicator 1.0\n"))
    result = check_mpi_launcher(ctx(tmp_path, str(bindir)))
    assert result.status == "warning" and "frobnicator" in result.message


def test_scheduler_pbs_slurm_and_broken(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("x4000c0s0b0n0\nx4000c0s1b0n0\n")
    pbs = check_scheduler(ctx(tmp_path, "", PBS_JOBID="8123.aurora-pbs", PBS_NODEFILE=str(nodefile)))
    assert pbs.status == "ok", pbs
    assert pbs.details["job_id"] == "8123.aurora-pbs"
    assert pbs.details["hosts"] == ["x4000c0s0b0n0", "x4000c0s1b0n0"]

    slurm = check_scheduler(
        ctx(
            tmp_path,
            "",
            SLURM_JOB_ID="42",
            SLURM_JOB_NODELIST="nid[001234-001235]",
            SLURM_NNODES="2",
            PBS_JOBID="stale.pbs",
        )
    )
    assert slurm.status == "warning" and slurm.details["adapter"] == "slurm"
    assert slurm.details["hosts"] == ["nid001234", "nid001235"] and "unset PBS_JOBID" in slurm.remedy

    broken = check_scheduler(ctx(tmp_path, "", PBS_JOBID="1.pbs", PBS_NODEFILE=str(tmp_path / "gone")))
    assert broken.status == "error"


def test_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_devices(ctx(tmp_path, "")).status == "ok"
    # This machine has no GPU; a job that expected one shows it in its environment.
    warned = check_devices(ctx(tmp_path, "", CUDA_VISIBLE_DEVICES="0,1"))
    assert warned.status == "warning" and "CUDA_VISIBLE_DEVICES=0,1" in warned.message
    monkeypatch.setitem(sys.modules, "torch", None)  # torch missing: cannot uninstall it here
    missing = check_devices(ctx(tmp_path, ""))
    assert missing.status == "warning" and "ezpz[torch]" in missing.remedy


def test_wandb_masks_keys(tmp_path: Path) -> None:
    key = "0123456789abcdef0123456789abcdefSECRETk9z2"
    online = DoctorContext(environ={"HOME": str(tmp_path), "WANDB_API_KEY": key})
    result = check_wandb(online)
    assert result.status == "ok" and mask(key) in result.message and result.message.endswith("WANDB_API_KEY")
    blob = results_json([result])
    assert key not in blob and "SECRET" not in blob and "k9z2" in blob

    nokey = check_wandb(DoctorContext(environ={"HOME": str(tmp_path), "WANDB_MODE": "online"}))
    assert nokey.status == "warning" and "wandb login" in nokey.remedy
    assert check_wandb(ctx(tmp_path, "")).status == "ok"  # offline needs no key

    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password netrcKEY7777\n")
    netrc_result = check_wandb(DoctorContext(environ={"HOME": str(tmp_path)}))
    assert netrc_result.status == "ok" and "7777" in netrc_result.message
    assert "netrcKEY" not in netrc_result.message
    assert mask("abc") == "****"


def test_plugin_checks_and_crashing_checks(tmp_path: Path) -> None:
    def fine(_: DoctorContext) -> CheckResult:
        return CheckResult("site", "ok", "lustre mounted")

    def broken(_: DoctorContext) -> CheckResult:
        raise RuntimeError("boom")

    results = run_checks(ctx(tmp_path, ""), [Check("site", fine), Check("bad", broken)])
    assert [(r.name, r.status) for r in results] == [("site", "ok"), ("bad", "error")]
    assert "RuntimeError: boom" in results[1].message
    assert json.loads(results_json(results))["ok"] is False


def test_spec_fit(tmp_path: Path) -> None:
    none = check_spec(ctx(tmp_path, f"{VENV_BIN}:/usr/bin:/bin"))
    assert none.status == "ok" and "nothing to fit" in none.message
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("h1\nh2\n")
    job = {"PBS_JOBID": "1.pbs", "PBS_NODEFILE": str(nodefile)}
    fits = DoctorContext(environ={"PATH": "", **job}, layers=[("flags", {"np": 4, "ppn": 2})])
    assert check_spec(fits).status == "ok", check_spec(fits)
    too_many = DoctorContext(environ={"PATH": "", **job}, layers=[("flags", {"nhosts": 3, "ppn": 1})])
    result = check_spec(too_many)
    assert result.status == "error" and "3" in result.message
    # Aurora's template expects 12 GPU tiles per node; this machine shows none.
    aurora = DoctorContext(environ={"PATH": "", **job}, layers=[("flags", {"template": "aurora"})])
    warned = check_spec(aurora)
    assert warned.status == "warning", warned
    assert "expects 12 accelerators per node, this node shows 0" in warned.message


def test_cli_json_and_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fake: an ``mpiexec`` script reporting Open MPI first (an error), then the real MPICH (exit 0)."""
    from ezpz.cli import main

    bad = fake_bin(tmp_path, "mpiexec", version_script(OPENMPI))
    for var in ("PBS_JOBID", "PBS_NODEFILE", "SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PATH", str(bad))
    assert main(["doctor", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert {c["name"]: c["status"] for c in data["checks"]}["mpi4py"] == "error"
    monkeypatch.setenv("PATH", f"{VENV_BIN}:/usr/bin:/bin")
    assert main(["doctor"]) == 0
    table = capsys.readouterr().out
    assert "ezpz doctor" in table and "mpi4py" in table


def test_rendezvous_check_flags_leftover_master_vars():
    from ezpz.doctor.checks import check_rendezvous

    stale = check_rendezvous(DoctorContext(environ={"MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29500"}))
    assert stale.status == "warning" and "MASTER_ADDR=10.1.2.3" in stale.message and "unset" in stale.remedy
    inside = check_rendezvous(DoctorContext(environ={"MASTER_ADDR": "n1", "EZPZ_LAUNCH_ID": "42-25000"}))
    assert inside.status == "ok"
    assert check_rendezvous(DoctorContext(environ={"PATH": "/usr/bin"})).status == "ok"
