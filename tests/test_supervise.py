"""Run supervision for real: MPICH hydra ranks from the ``mpich`` wheel under ``ezpz launch``.

Nothing is mocked: the launcher, the shim, the ranks, their signals and exit
codes are real processes.  ``PYTHONUNBUFFERED`` is removed from the ranks'
environment, since this machine sets it and users' machines do not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import alive

PAYLOAD = Path(__file__).parent / "payloads" / "supervise_cases.py"
BIN = Path(sys.executable).parent


def launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return env


def launch(
    tmp: Path,
    *args: str,
    np: int = 4,
    timeout: float = 120,
    case: str | None = None,
    command: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    command = (sys.executable, str(PAYLOAD), case, str(tmp)) if case else command
    return subprocess.run(
        [sys.executable, "-m", "ezpz", "launch", "-n", str(np), "--run-dir", str(tmp / "run"), *args, "--", *command],
        capture_output=True,
        timeout=timeout,
        env=launch_env(),
        cwd=tmp,
    )


def result(tmp: Path) -> dict:
    return json.loads((tmp / "run" / "result.json").read_text())


def rank_pids(tmp: Path) -> list[int]:
    return [int(p.read_text()) for p in tmp.glob("*.pid")]


def test_first_failure_stops_the_others_and_is_explained(tmp_path):
    start = time.monotonic()
    done = launch(tmp_path, case="fail")
    wall = time.monotonic() - start
    err = done.stderr.decode()
    assert done.returncode == 1, err
    # The others sleep 60 s: they were stopped, within seconds of the failure.
    assert wall < 45, err
    record = result(tmp_path)
    assert record["first_failure"]["rank"] == 2
    assert record["duration_s"] - record["first_failure"]["seconds"] < 10
    summary = err[err.index("ezpz: run failed") :]
    assert "rank 2 failed first: exit 1" in summary
    assert f"host {os.uname().nodename}" in summary
    assert "RuntimeError: rank 2 lost its optimizer state" in summary
    assert "3 other ranks ended after it" in summary
    # Collateral ranks are never named as the cause.
    assert not re.search(r"rank [013] failed", summary)
    log = (tmp_path / "run" / "rank-2.log").read_text()
    assert "Traceback (most recent call last):" in log
    assert "in fail_in_rank_two" in log
    assert log.rstrip().endswith("RuntimeError: rank 2 lost its optimizer state")
    pids = rank_pids(tmp_path)
    assert len(pids) == 4
    time.sleep(0.5)
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.torch
def test_torch_record_error_file_lands_in_the_run_dir_and_the_summary(tmp_path):
    pytest.importorskip("torch")
    done = launch(tmp_path, np=2, case="recorded", timeout=180)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "its error file (torch @record): ValueError: loss is NaN at step 7" in err
    record = json.loads((tmp_path / "run" / "rank-1.error.json").read_text())
    assert "loss is NaN at step 7" in record["message"]["extraInfo"]["py_callstack"]


@pytest.mark.torch
def test_a_rank_failing_because_another_died_is_not_named_the_cause(tmp_path):
    pytest.importorskip("torch")
    done = launch(tmp_path, np=2, case="collateral", timeout=180)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    summary = err[err.index("ezpz: run failed") :]
    assert "rank 1 failed first: exit 1" in summary
    assert "RuntimeError: rank 1 hit a bad batch" in summary
    assert "rank 0 failed" not in summary
    assert result(tmp_path)["first_failure"]["rank"] == 1


def test_rank_killed_by_sigkill_exits_137(tmp_path):
    done = launch(tmp_path, "--ranks", "all", np=2, case="killed")
    err = done.stderr.decode()
    assert done.returncode == 137, err
    assert "rank 0 failed first: SIGKILL (exit 137)" in err
    assert result(tmp_path)["first_failure"] == {
        "rank": 0,
        "local_rank": 0,
        "host": os.uname().nodename,
        "code": None,
        "signal": 9,
        "seconds": result(tmp_path)["first_failure"]["seconds"],
    }


def test_flooding_ranks_never_share_a_console_line_and_each_log_is_exact(tmp_path):
    done = launch(tmp_path, np=2, case="flood", timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 40_000
    pattern = re.compile(r"^\[([01])\] rank ([01]) line (\d+) x{40}$")
    seen = {0: [], 1: []}
    for line in lines:
        found = pattern.match(line)
        assert found, f"not one whole line of one rank: {line[:120]!r}"
        assert found[1] == found[2], f"wrong label: {line[:80]!r}"
        seen[int(found[2])].append(int(found[3]))
    for rank in (0, 1):
        assert seen[rank] == list(range(20_000))
        log = (tmp_path / "run" / f"rank-{rank}.log").read_text().splitlines()
        assert log == [f"rank {rank} line {i} " + "x" * 40 for i in range(20_000)]


def test_a_line_shows_while_the_rank_still_computes(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ezpz",
            "launch",
            "-n",
            "1",
            "--run-dir",
            str(tmp_path / "run"),
            "--",
            sys.executable,
            str(PAYLOAD),
            "live",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=launch_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        arrived = time.time()
        assert line.startswith("[0] rank 0 printed at "), line
        printed = float(line.rsplit(" ", 1)[1])
        # The rank sleeps 10 s after printing: block buffering would hold the
        # line until then.  Measured here: well under a second.
        assert arrived - printed < 5
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(30)


def test_timeout_dumps_every_rank_stack_before_stopping(tmp_path):
    done = launch(tmp_path, "--timeout", "3", np=2, case="hang")
    err = done.stderr.decode()
    assert done.returncode == 124, err
    for rank in (0, 1):
        log = (tmp_path / "run" / f"rank-{rank}.log").read_text()
        assert "in blocked_in_collective_for_test" in log, log
    summary = err[err.index("ezpz: run failed") :]
    assert "rank 0 was stuck in blocked_in_collective_for_test (supervise_cases.py:" in summary
    assert "rank 1 was stuck in blocked_in_collective_for_test" in summary
    assert result(tmp_path)["ranks"]["1"]["stuck_in"].startswith("blocked_in_collective_for_test")


def test_invalid_utf8_a_1mb_line_and_a_closed_stdout(tmp_path):
    done = launch(tmp_path, "--no-tag", np=2, case="hostile")
    assert done.returncode == 0, done.stderr.decode()
    assert b"\xff\xfe not utf-8 \x80\n" in done.stdout
    assert b"A" * 1_000_000 + b"\n" in done.stdout
    assert b"stdout closed, stderr still works" in done.stderr
    log = (tmp_path / "run" / "rank-0.log").read_bytes()
    assert log == b"\xff\xfe not utf-8 \x80\n" + b"A" * 1_000_000 + b"\n"
    assert (tmp_path / "run" / "rank-1.log").read_bytes() == b"stdout closed, stderr still works\n"


def test_a_command_that_cannot_start_is_reported_once_with_a_hint(tmp_path):
    done = launch(tmp_path, np=2, command=("pyhton", "x.py"))
    err = done.stderr.decode()
    assert done.returncode == 127, err
    # Said once, for every rank, with the closest name on PATH; no rank repeats it.
    assert [line for line in err.splitlines() if "pyhton" in line] == [
        "error: command cannot start on 2 ranks: not found (pyhton); did you mean python?"
    ]
    assert done.stdout == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ranks", "0,x"], "error: invalid ranks (from flags): bad rank filter"),
        (["--ranks", "7"], "error: rank filter names rank 7, but the run has 2 ranks"),
        (["--run-dir", "/proc/ezpz-cannot-write-here"], "error: run directory is not writable"),
    ],
)
def test_bad_supervision_input_is_one_line_and_starts_nothing(tmp_path, args, message):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ezpz",
            "launch",
            "-n",
            "2",
            *args,
            "--",
            sys.executable,
            str(PAYLOAD),
            "live",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=launch_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(message), done.stderr
    assert not list(tmp_path.glob("*.pid")), "a rank started"
    assert not (tmp_path / "ezpz-runs").exists()


def test_default_run_dir_is_under_ezpz_runs_and_nothing_else_lands_in_cwd(tmp_path):
    env = {k: v for k, v in launch_env().items() if k != "EZPZ_RUN_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "ezpz", "launch", "-n", "2", "--", sys.executable, "-c", "print('hi')"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["ezpz-runs"]
    (run,) = (tmp_path / "ezpz-runs").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}-local-\d+", run.name)
    assert sorted(p.name for p in run.iterdir()) == ["plan.json", "rank-0.log", "rank-1.log", "result.json"]
    # The path is printed at the start and at the end.
    assert done.stderr.count(f"ezpz: run directory ezpz-runs/{run.name}") == 2
    assert json.loads((run / "plan.json").read_text())["np"] == 2


def test_disk_full_while_logging_keeps_the_run_and_says_so_once(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # /dev/full fails every write with ENOSPC, as a full disk does.
    (run / "rank-0.log").symlink_to("/dev/full")
    done = launch(tmp_path, np=2, case="flood", timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert err.count("stopped (No space left on device); the run goes on") == 1
    assert len(done.stdout.decode().splitlines()) == 40_000
    assert result(tmp_path)["exit_code"] == 0
