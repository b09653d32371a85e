"""execute in this process: exit codes, signals, the idle watchdog, the retry loop.

Stand-in, on purpose: the "launcher" here is a Python child process that plays
its part (exits with a code, dies of a signal, goes silent, ignores SIGTERM), so
execute's own logic runs in-process where it can be checked directly (and
mutation-tested).  Real launchers with real ranks: tests/test_launch_real.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import alive

from ezpz.launch.execute import GRACE, TIMEOUT_EXIT, execute
from ezpz.model.plan import Plan
from ezpz.model.spec import LaunchSpec


def plan_running(code: str, **changes: object) -> Plan:
    """A real rendered plan whose launcher is ``python -c CODE``."""
    rendered = LaunchSpec(command=["true"], np=1, master_port=29500).render({"PATH": os.environ["PATH"]})
    return dataclasses.replace(rendered, argv=(sys.executable, "-c", code), files=(), **changes)


def signal_me_when(path: Path, sig: int) -> threading.Thread:
    """Send ``sig`` to this process once ``path`` exists (the child is up)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("code", [0, 3, 255])
def test_the_launchers_exit_code_is_returned(code: int) -> None:
    assert execute(plan_running(f"raise SystemExit({code})")) == code


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_launcher_killed_by_a_signal_returns_128_plus_the_signal(sig: signal.Signals) -> None:
    code = f"import os; os.kill(os.getpid(), {int(sig)})"  # Python's SIGTERM/SIGSEGV action is the default
    assert execute(plan_running(code)) == 128 + sig


def test_the_plan_env_reaches_the_launcher(tmp_path: Path) -> None:
    out = tmp_path / "env"
    code = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(os.environ['MASTER_PORT'] + os.environ['X'])"
    plan = plan_running(code)
    assert execute(dataclasses.replace(plan, env={**plan.env, "X": "y"}), {"PATH": os.environ["PATH"]}) == 0
    assert out.read_text() == "29500y"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_us_stops_the_launcher_and_returns_128_plus_it(tmp_path: Path, sig: signal.Signals) -> None:
    up, got = tmp_path / "up", tmp_path / "got"
    code = (
        "import os, pathlib, signal, time\n"
        f"def note(n, f): pathlib.Path({str(got)!r}).write_text(str(n)); os._exit(1)\n"
        f"signal.signal({int(sig)}, note)\n"
        f"pathlib.Path({str(up)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(20); raise SystemExit(9)\n"
    )
    signal_me_when(up, sig)
    assert execute(plan_running(code, retries=3)) == 128 + sig
    assert got.read_text() == str(int(sig))  # forwarded as that signal, not a SIGKILL
    assert not alive(int(up.read_text()))


def test_a_launcher_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    up = tmp_path / "up"
    code = (
        "import os, pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(up)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(20); raise SystemExit(9)\n"
    )
    signal_me_when(up, signal.SIGTERM)
    start = time.monotonic()
    assert execute(plan_running(code)) == 128 + signal.SIGTERM
    assert time.monotonic() - start >= GRACE  # it had the whole grace period first
    assert not alive(int(up.read_text()))


def test_an_interrupted_run_is_not_retried(tmp_path: Path) -> None:
    up, starts = tmp_path / "up", tmp_path / "starts"
    code = (
        "import os, pathlib, time\n"
        f"p = pathlib.Path({str(starts)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        f"pathlib.Path({str(up)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(20); raise SystemExit(9)\n"
    )
    signal_me_when(up, signal.SIGTERM)
    slept: list[float] = []
    assert execute(plan_running(code, retries=2), sleep=slept.append) == 128 + signal.SIGTERM
    assert starts.read_text() == "x" and slept == []


def test_the_idle_watchdog_stops_a_silent_launcher(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    up = tmp_path / "up"
    code = (
        "import os, pathlib, sys, time\n"
        "print('hello', flush=True)\n"
        f"pathlib.Path({str(up)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(20); raise SystemExit(9)\n"
    )
    assert execute(plan_running(code, timeout=1.0)) == TIMEOUT_EXIT
    assert "hello" in capfd.readouterr().out  # output passed through while watched
    assert not alive(int(up.read_text()))


def test_output_keeps_the_watchdog_quiet() -> None:
    """Silent for at most 0.25 s at a time, 4 s in all: a 3 s watchdog must not fire."""
    code = "import time\nfor _ in range(16):\n    print('.', flush=True); time.sleep(0.25)\n"
    assert execute(plan_running(code, timeout=3.0)) == 0


def test_failed_runs_are_retried_with_exponential_backoff_up_to_60_s(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    code = f"import pathlib; p = pathlib.Path({str(starts)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x'); raise SystemExit(7)"
    slept: list[float] = []
    assert execute(plan_running(code, retries=8), sleep=slept.append) == 7
    assert slept == [1, 2, 4, 8, 16, 32, 60, 60]  # before each retry, never before the first start
    assert starts.read_text() == "x" * 9


def test_a_retry_that_succeeds_ends_the_loop(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    code = (
        f"import pathlib; p = pathlib.Path({str(starts)!r}); n = len(p.read_text()) if p.exists() else 0; "
        "p.write_text('x' * (n + 1)); raise SystemExit(0 if n == 1 else 5)"
    )
    slept: list[float] = []
    assert execute(plan_running(code, retries=5), sleep=slept.append) == 0
    assert slept == [1] and starts.read_text() == "xx"


def test_no_retries_means_one_start_and_no_sleep() -> None:
    slept: list[float] = []
    assert execute(plan_running("raise SystemExit(4)"), sleep=slept.append) == 4
    assert slept == []
