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


@pytest.mark.parametrize(
    ("counts", "advice"),
    [
        (["-n", "3", "-ppn", "2"], "use -n 2 or -n 4, or -ppn 1 or -ppn 3"),
        (["-n", "10", "-nh", "4"], "use -n 8 or -n 12, or -nh 2 or -nh 5"),
        (["-n", "8", "-nh", "3", "-ppn", "4"], "make them agree: -n 12 or -nh 2"),
    ],
)
def test_count_errors_say_what_would_work(capsys: pytest.CaptureFixture[str], counts: list[str], advice: str):
    assert main(["launch", *counts, "--dry-run", "--", "x"]) == 2
    err = capsys.readouterr().err
    assert advice in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("key", "meant"), [("nprocs", "np"), ("cpu-bind", "cpu_bind"), ("nodes", "nhosts")])
def test_an_unknown_config_key_gets_did_you_mean(tmp_path, capsys: pytest.CaptureFixture[str], key: str, meant: str):
    config = tmp_path / "ezpz.toml"
    config.write_text(f'"{key}" = 4\n')
    assert main(["launch", "-c", str(config), "--dry-run", "--", "x"]) == 2
    err = capsys.readouterr().err
    assert f"unknown key {key!r} in {config}" in err and f"did you mean {meant!r}?" in err, err


def test_an_unknown_spec_field_in_python_gets_did_you_mean():
    from ezpz import LaunchSpec
    from ezpz.errors import SpecError

    with pytest.raises(SpecError, match="did you mean 'np'"):
        LaunchSpec(nprocs=3)  # type: ignore[call-arg]


def test_the_dry_run_on_one_host_says_1_host(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    for key in list(os.environ):
        if key.startswith(("EZPZ_", "PBS_", "SLURM_")):
            monkeypatch.delenv(key)
    assert main(["launch", "-n", "2", "--dry-run", "--", "x"]) == 0
    out = capsys.readouterr().out
    assert "np over the job's 1 host]" in out and "1 hosts" not in out, out


def test_no_message_in_the_package_hedges_a_plural_with_s_in_parentheses():
    """'1 accelerator(s)', 'host(s)': messages count with errors.plural instead (docstrings may say '(s)')."""
    import ast
    from pathlib import Path

    import ezpz

    hedged = []
    for path in sorted(Path(ezpz.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and "(s)" in node.value and id(node) not in docstrings:
                hedged.append(f"{path.name}:{node.lineno}: {node.value.strip()[:60]}")
    assert hedged == []
