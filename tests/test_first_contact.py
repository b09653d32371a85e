"""What a newcomer reads first: usage errors, ``ezpz --help``, plurals, config-key suggestions."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from ezpz.cli import app, main
from ezpz.errors import EzpzError, one_line, plural


@pytest.mark.parametrize(
    "args",
    [["report"], ["launch", "-n"], ["nosuchcmd"], ["templates", "show"], ["doctor", "--nope"]],
)
def test_usage_errors_are_one_line_without_doubled_punctuation(capsys: pytest.CaptureFixture[str], args: list[str]):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert ".;" not in err and ".(" not in err and ". (" not in err, err
    assert err.rstrip().endswith("run with --help for usage"), err


def test_error_lines_drop_a_full_stop_before_the_next_part():
    assert (
        one_line("Missing argument 'run_dir'.", hint="run with --help") == "Missing argument 'run_dir'; run with --help"
    )
    assert EzpzError("bad thing.", "x", "do y").line() == "bad thing (given 'x'); do y"


def test_plural():
    assert [plural(n, "host") for n in (0, 1, 2)] == ["0 hosts", "1 host", "2 hosts"]
    assert plural(1, "process", "processes") == "1 process" and plural(3, "process", "processes") == "3 processes"


def test_root_help_shows_every_command_s_whole_first_line():
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "ezpz", "--help"], capture_output=True, text=True, env=env, timeout=60
    ).stdout
    flat = " ".join(out.split())
    assert "..." not in out.split("Commands:")[1].replace("CMD...", "") and "…" not in out
    for command in app.registered_commands:
        first = inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")[0]
        assert " ".join(first.split()) in flat, first
