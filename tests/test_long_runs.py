"""Long runs: the warning signal, the stop grace, should_stop, and resume in the example.

Real processes throughout: ``ezpz launch`` starting MPICH hydra ranks (the
``mpich`` wheel), torch gloo on CPU for :func:`ezpz.should_stop` and the
example.  The signals are real signals sent to the real ``ezpz launch``
process, as a scheduler (or ``scancel --signal``) would send them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from procs import alive

from ezpz.errors import DistError
from ezpz.launch.execute import STOPPED_EXIT
from ezpz.runtime import stop

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = Path(__file__).parent / "payloads"
EZPZ = [sys.executable, "-m", "ezpz"]
EXAMPLE = REPO / "examples" / "train_transformer.py"
WARNED = [sys.executable, str(PAYLOADS / "warned_rank.py")]


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate``; fail naming ``what`` after ``timeout_s`` (a bound on waiting, not on speed)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


class Launch:
    """``ezpz launch`` in the background, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*EZPZ, "launch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 180) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"ezpz launch did not finish in {timeout} s; output:\n{self.output}")
        self.reader.join(10)
        return code


def rank_pids(directory: Path, count: int) -> list[int]:
    wait_for(lambda: len(list(directory.glob("rank-*.pid"))) == count, 90, f"{count} ranks to start")
    time.sleep(0.2)  # the file is written before the loop: let the rank reach it
    return [int(p.read_text()) for p in sorted(directory.glob("rank-*.pid"))]


def test_warning_sent_to_launch_reaches_every_rank_and_the_run_goes_on(tmp_path: Path) -> None:
    """SIGUSR2 to ezpz launch: hydra would die of it; the ranks get it instead, exit 0, launch exits 75."""
    run = Launch(["-n", "2", "--", *WARNED, str(tmp_path), "usr2"])
    rank_pids(tmp_path, 2)
    run.proc.send_signal(signal.SIGUSR2)
    assert run.wait() == STOPPED_EXIT, run.output
    assert sorted(p.name for p in tmp_path.glob("warned-*")) == ["warned-0", "warned-1"]
    assert {p.read_text() for p in tmp_path.glob("warned-*")} == {str([int(signal.SIGUSR2)])}


def test_sigterm_gives_the_ranks_stop_grace_to_save(tmp_path: Path) -> None:
    """A save slower than the old fixed 5 s grace completes within --stop-grace; exit 128 + SIGTERM."""
    run = Launch(
        ["-n", "2", "--stop-grace", "60", "--", *WARNED, str(tmp_path), "term"],
        env={"EZPZ_TEST_SAVE_S": "7"},
    )
    rank_pids(tmp_path, 2)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM, run.output
    assert sorted(p.name for p in tmp_path.glob("saved-*")) == ["saved-0", "saved-1"]


def test_stop_grace_ends_ranks_that_ignore_sigterm(tmp_path: Path) -> None:
    """Ranks that ignore SIGTERM are still gone once the grace is over: the stop is bounded."""
    run = Launch(["-n", "2", "--stop-grace", "6", "--", *WARNED, str(tmp_path), "stubborn"])
    pids = rank_pids(tmp_path, 2)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM, run.output
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, "the stubborn ranks to be killed")


def test_should_stop_is_true_on_every_rank_in_the_same_step(tmp_path: Path) -> None:
    """The warning reaches only rank 1 (sent to it directly); both ranks stop after the same step.

    ezpz launch itself got no warning, so the run ends 0, not 75.
    """
    run = Launch(["-n", "2", "--", sys.executable, str(PAYLOADS / "stop_agree.py"), str(tmp_path)])
    pids = rank_pids(tmp_path, 2)
    os.kill(pids[1], signal.SIGUSR2)
    assert run.wait() == 0, run.output
    # Each console line is one rank's, labelled "[N] " by ezpz launch.
    stops = [json.loads(m) for line in run.lines for m in re.findall(r'\{"rank".*\}', line)]
    assert sorted(s["rank"] for s in stops) == [0, 1], run.output
    assert stops[0]["step"] == stops[1]["step"] > 1


@pytest.fixture
def fresh_flag() -> Iterator[None]:
    """should_stop's process state and the signal handlers, restored after the test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR2, signal.SIGTERM)}
    stop._FLAG.__init__()
    yield
    stop._FLAG.__init__()
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_should_stop_in_one_process_sticks_and_polls_every_n(fresh_flag: None) -> None:
    assert stop.should_stop(every=3) is False
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.05)
    assert stop.received() == signal.SIGUSR2
    # The 2nd call is not a poll with every=3; the 3rd is.
    assert stop.should_stop(every=3) is False
    assert stop.should_stop(every=3) is True
    assert stop.should_stop(every=3) is True


def test_should_stop_takes_sigterm_once_polled(fresh_flag: None) -> None:
    stop.should_stop()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert stop.should_stop() is True
    assert stop.received() == signal.SIGTERM


def test_should_stop_refuses_every_below_one(fresh_flag: None) -> None:
    with pytest.raises(DistError, match="every=N"):
        stop.should_stop(every=0)


def test_arm_leaves_sigterm_alone_until_the_first_poll(fresh_flag: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stop.arm()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) is not signal.SIG_DFL


# The example, small enough for 2 CPU ranks on a loaded machine: random
# tokens, one layer; deterministic given the seed.
EXAMPLE_ARGS = [
    "--random",
    "--layers",
    "1",
    "--heads",
    "2",
    "--dim",
    "32",
    "--seq-len",
    "16",
    "--batch-size",
    "4",
    "--max-steps",
    "200",
    "--save-every",
    "1000",
    "--eval-batches",
    "1",
    "--sample-tokens",
    "4",
    "--seed",
    "7",
]


def test_example_stops_at_the_warning_and_resumes_to_the_same_loss(tmp_path: Path) -> None:
    """The must-hold of issue 15 item 4, for real on 2 gloo ranks.

    1. An uninterrupted run of 200 steps.
    2. The same with --checkpoint-dir; SIGUSR2 to ezpz launch after step 5:
       every rank saves at the same step K, the launch exits 75.
    3. The same command again: it resumes from K, and the loss of step 200
       equals the uninterrupted run's within 1e-6.
    """
    env = {
        "EZPZ_LOG_FROM_ALL_RANKS": "1",
        "WANDB_MODE": "disabled",
        "EZPZ_PROGRESS": "lines",
        "EZPZ_PROGRESS_EVERY": "1",
    }
    base = ["-n", "2", "--", sys.executable, str(EXAMPLE), *EXAMPLE_ARGS]
    whole = Launch([*base, "--summary", str(tmp_path / "whole.json")], env=env, cwd=tmp_path)
    assert whole.wait() == 0, whole.output
    expected = json.loads((tmp_path / "whole.json").read_text())

    ckpt = tmp_path / "ckpt"
    resumable = [*base, "--checkpoint-dir", str(ckpt), "--summary", str(tmp_path / "resumed.json")]
    first = Launch(resumable, env=env, cwd=tmp_path)
    wait_for(lambda: "step 5/200 " in first.output or first.proc.poll() is not None, 120, "step 5")
    first.proc.send_signal(signal.SIGUSR2)
    assert first.wait() == STOPPED_EXIT, first.output
    stops = [line for line in first.lines if "stopped at step" in line]
    assert len(stops) == 2, first.output  # one line per rank
    steps = {int(line.split("stopped at step ")[1].split()[0]) for line in stops}
    assert len(steps) == 1, stops
    k = steps.pop()
    assert 5 <= k < 200
    saved = sorted(p.name for p in ckpt.iterdir() if not p.name.startswith("."))
    assert saved == [f"step-{k:08d}"], saved
    assert not (tmp_path / "resumed.json").exists()

    second = Launch(resumable, env=env, cwd=tmp_path)
    assert second.wait() == 0, second.output
    assert f"resumed from step {k}" in second.output
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["resumed_from"] == k
    assert resumed["last_loss"] == pytest.approx(expected["last_loss"], abs=1e-6)
