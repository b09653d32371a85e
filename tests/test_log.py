"""ezpz.log: rank filtering, plain output, level validation, JSONL log file with rotation.

The ezpz logger is configured once per process, so each case runs in a fresh
interpreter with its own environment (rank variables as a launcher sets them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ezpz.errors import SpecError
from ezpz.log import log_level

SCRIPT = """
from ezpz.log import get_logger
log = get_logger("train")
log.debug("debug line")
log.info("hello %s", "world")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EZPZ_", "RANK", "WORLD_SIZE", "PMI_"))}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_level_validation() -> None:
    assert log_level("debug") == 10 and log_level("warn") == 30 and log_level("15") == 15
    with pytest.raises(SpecError, match=r"not a log level \(given 'VERBOSE'\); valid: .*DEBUG"):
        log_level("verbose")
    with pytest.raises(SpecError, match="did you mean 'DEBUG'"):
        log_level("DEBG")


LEVEL_LINE = "EZPZ_LOG_LEVEL is not a log level (given 'LOUD'); valid: CRITICAL, DEBUG, ERROR, INFO, NOTSET, WARNING"
MISSING_DIR_LINE = "log file directory does not exist (given '{}'); create it or choose another path"


def cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    """``ezpz launch --dry-run -- true``: any command configures the ezpz logger first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EZPZ_", "RANK", "WORLD_SIZE", "PMI_"))}
    argv = [sys.executable, "-m", "ezpz", "launch", "--dry-run", "--", "true"]
    return subprocess.run(argv, env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_bad_level_env_is_one_clear_line() -> None:
    proc = cli({"EZPZ_LOG_LEVEL": "loud"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"error: {LEVEL_LINE}\n")


def test_bad_level_env_in_a_script_raises_the_same_line() -> None:
    """A user script has no CLI to catch it: the traceback ends in the same one line, as a SpecError."""
    proc = run({"EZPZ_LOG_LEVEL": "loud"})
    assert proc.returncode == 1
    assert proc.stderr.rstrip("\n").splitlines()[-1] == f"ezpz.errors.SpecError: {LEVEL_LINE}"


def test_plain_rank0_console_and_level() -> None:
    proc = run({"NO_COLOR": "1", "EZPZ_LOG_LEVEL": "DEBUG"})
    assert proc.returncode == 0, proc.stderr
    assert " DEBUG ezpz.train: debug line" in proc.stderr
    assert " INFO ezpz.train: hello world" in proc.stderr
    assert "\x1b[" not in proc.stderr and "[rank" not in proc.stderr


def test_other_ranks_are_silent_unless_asked(tmp_path: Path) -> None:
    rank1 = {"RANK": "1", "WORLD_SIZE": "2", "NO_COLOR": "1", "EZPZ_LOG_FILE": str(tmp_path / "log.jsonl")}
    quiet = run(rank1)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert not list(tmp_path.iterdir())
    loud = run({**rank1, "EZPZ_LOG_FROM_ALL_RANKS": "1"})
    assert "INFO ezpz.train: [rank 1] hello world" in loud.stderr
    records = [json.loads(line) for line in (tmp_path / "log.rank1.jsonl").read_text().splitlines()]
    assert [(r["level"], r["rank"], r["message"]) for r in records] == [
        ("INFO", 1, "hello world"),
        ("ERROR", 1, "boom"),
    ]
    assert "ZeroDivisionError" in records[1]["exc"]


def test_jsonl_log_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "run-{rank}.jsonl"
    env = {"EZPZ_LOG_FILE": str(path), "EZPZ_LOG_FILE_MAX_BYTES": "300", "EZPZ_LOG_FILE_BACKUPS": "2"}
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    live = tmp_path / "run-0.jsonl"
    backup = tmp_path / "run-0.jsonl.1"
    assert live.exists() and backup.exists()
    lines = backup.read_text().splitlines() + live.read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["hello world", "boom"]


def test_log_file_in_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "log.jsonl"
    proc = cli({"EZPZ_LOG_FILE": str(target)})
    assert (proc.returncode, proc.stderr) == (2, "error: " + MISSING_DIR_LINE.format(target) + "\n")
    assert not (tmp_path / "nope").exists()
