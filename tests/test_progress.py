"""Training progress: ``step N/total``, elapsed, ETA; plain lines in logs, a rich bar on a terminal."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ezpz.errors import HistoryError
from ezpz.runtime.progress import Progress, format_duration

LINE = re.compile(r"^step (\d+)/(\d+)(?: (.*))? \| elapsed (\d+:\d\d), ETA (\d+:\d\d|\?)$")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    handler = _Lines()
    logger = logging.getLogger("ezpz.progress")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_plain_lines_every_n_steps_with_total_elapsed_and_eta(lines: list[str]) -> None:
    progress = Progress(400, every=40, mode="lines")
    for step in range(1, 401):
        progress.update(step, f"loss={4 - step / 200:.3f}")
    progress.close()
    steps = [int(LINE.match(line)[1]) for line in lines]  # type: ignore[index]
    assert steps == [1, *range(40, 401, 40)]
    assert all(LINE.match(line)[2] == "400" for line in lines)  # type: ignore[index]
    assert LINE.match(lines[0])[5] == "?"  # type: ignore[index]  # one step: no rate yet
    assert LINE.match(lines[-1])[5] == "0:00"  # type: ignore[index]
    assert "loss=2.000" in lines[-1]


def test_a_zero_based_loop_still_shows_its_last_step(lines: list[str]) -> None:
    progress = Progress(10, every=4, mode="lines")
    for step in range(10):
        progress.update(step)
    progress.close()
    assert [int(LINE.match(line)[1]) for line in lines] == [0, 4, 8, 9]  # type: ignore[index]


def test_eta_is_the_mean_step_time_times_the_steps_left() -> None:
    progress = Progress(100, mode="off")
    progress.started = 0.0
    progress._first = (1.0, 0.0)
    assert progress.eta(11, now=5.0) == pytest.approx(0.5 * 89)
    assert progress.line(11, "loss=1", now=5.0) == "step 11/100 loss=1 | elapsed 0:05, ETA 0:44"


def test_durations() -> None:
    assert [format_duration(s) for s in (0, 7.4, 65, 3723, float("nan"))] == ["0:00", "0:07", "1:05", "1:02:03", "?"]


def test_only_rank_0_shows_progress(lines: list[str]) -> None:
    progress = Progress(5, every=1, mode="lines", rank=1)
    for step in range(1, 6):
        progress.update(step)
    assert progress.mode == "off" and lines == []


@pytest.mark.parametrize(("var", "value"), [("EZPZ_PROGRESS", "fancy"), ("EZPZ_PROGRESS_EVERY", "0")])
def test_bad_settings_are_one_line_errors(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(HistoryError, match=var):
        Progress(10)


@pytest.mark.parametrize("total", [0, -3, 2.5, True])
def test_total_must_be_a_positive_whole_number(total: object) -> None:
    with pytest.raises(HistoryError, match="total"):
        Progress(total)  # type: ignore[arg-type]


def test_a_terminal_gets_a_rich_bar_and_a_pipe_gets_lines() -> None:
    """Real terminal: the child's stdout is a pseudo-terminal (os.openpty)."""
    code = (
        "from ezpz.runtime.progress import Progress\n"
        "p = Progress(30)\n"
        "print('mode', p.mode, flush=True)\n"
        "[p.update(i, 'loss=1.0') for i in range(1, 31)]\n"
        "p.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EZPZ_")}
    env.update(TERM="xterm", COLUMNS="100")
    leader, follower = os.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert "mode bar" in screen and "step 30/30" in screen and "ETA" in screen and "━" in screen, screen
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "mode lines" in piped.stdout and "━" not in piped.stdout + piped.stderr
    assert "step 30/30 loss=1.0 | elapsed" in piped.stderr, piped.stderr


def test_history_with_a_total_shows_progress_and_names_its_report(
    tmp_path, monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> None:
    from ezpz import History

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EZPZ_PROGRESS", "lines")
    history = History(outdir="run", total=4, plot=False, wandb=False)
    for step in range(1, 5):
        assert history.update({"loss": 1.0 / step}, step=step).startswith(f"step={step} loss=")
    history.finalize()
    assert [LINE.match(line)[1] for line in lines] == ["1", "2", "3", "4"]  # type: ignore[index]
    assert lines[-1].startswith("step 4/4 loss=0.250 | elapsed")
    assert history.report_path == tmp_path / "run" / "report.md" and history.report_path.is_file()


def test_history_without_a_total_shows_no_progress(tmp_path, lines: list[str]) -> None:
    from ezpz import History

    history = History(outdir=tmp_path, plot=False, wandb=False)
    history.update({"loss": 1.0}, step=1)
    assert history.progress is None and lines == []
