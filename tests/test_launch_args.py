"""How ``ezpz launch`` splits its arguments: typo'd ezpz options and ambiguous words never start a launch.

The launcher in these tests is a FAKE: a shell script named ``mpiexec`` put
first on PATH that records its argv in a file and exits 0.  A case "starts no
process" when that record does not exist after the command returned.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ezpz.cli import main
from ezpz.cli.args import PASS_OPTION, split_args
from ezpz.errors import SpecError
from ezpz.launch.machine import Machine
from ezpz.schedulers.flags import LAUNCHER_OPTIONS

FAKE = """#!/bin/sh
# FAKE launcher: records that it was called (one line of argv) and exits 0.
printf '%s\\n' "$*" >> "{record}"
"""


@pytest.fixture
def fake_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_machine: Callable[..., Machine]) -> Path:
    """Put a FAKE ``mpiexec`` first on PATH; return the file it writes when called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "launcher-called"
    script = bin_dir / "mpiexec"
    script.write_text(FAKE.format(record=record))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key in list(os.environ):
        if key.startswith(("EZPZ_", "PBS_", "SLURM_")):
            monkeypatch.delenv(key)
    fake_machine(hostname="laptop")
    return record


def test_the_fake_launcher_records_a_real_launch(fake_launcher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control case: without a mistake the FAKE is called, with the launcher flag in place."""
    assert main(["launch", "-n", "1", "--no-vni", "--", "true"]) == 0
    assert "--no-vni" in fake_launcher.read_text()


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        (["--dryrun"], "--dry-run"),
        (["--timout", "5"], "--timeout"),
        (["--tempalte", "aurora"], "--template"),
        (["--timout=5"], "--timeout"),
        (["-dry-run"], "--dry-run"),
        (["--oversubscribed"], "--oversubscribe"),
        (["--hostfiles", "h"], "--hostfile"),
    ],
)
@pytest.mark.parametrize("dashdash", [True, False])
def test_a_mistyped_ezpz_option_stops_with_did_you_mean(
    fake_launcher: Path, capsys: pytest.CaptureFixture[str], typo: list[str], meant: str, dashdash: bool
) -> None:
    args = ["launch", "-n", "2", *typo, *(["--"] if dashdash else []), "python", "x.py"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"did you mean {meant}?" in err and err.startswith("error: ")
    assert f"{PASS_OPTION}={typo[0]}" in err
    assert not fake_launcher.exists(), "the launcher was started"


def test_launcher_flag_hands_a_lookalike_to_the_launcher(fake_launcher: Path) -> None:
    assert main(["launch", "-n", "1", f"{PASS_OPTION}=--dryrun", PASS_OPTION, "--depth", "--", "true"]) == 0
    assert "--dryrun --depth" in fake_launcher.read_text()


@pytest.mark.parametrize(
    "flags",
    [
        ["--no-vni"],
        ["--gpu-bind=closest"],  # srun: one letter from --cpu-bind, still the launcher's
        ["-hosts", "localhost"],  # hydra: close to --nhosts
        ["--launcher-exec", "ssh"],
        ["-genvall", "-launcher", "fork"],
    ],
)
def test_launcher_options_that_look_like_ours_still_go_to_the_launcher(
    capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    assert main(["launch", "--json", "-n", "1", *flags, "--", "python", "t.py"]) == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    start = argv.index(flags[0])
    assert argv[start : start + len(flags)] == flags and argv[-2:] == ["python", "t.py"]


def test_depth_8_dry_run_is_a_dry_run(fake_launcher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case: --depth reads 8, --dry-run stays ezpz's, nothing runs."""
    assert main(["launch", "--depth", "8", "--dry-run", "python", "x.py"]) == 0
    out = capsys.readouterr().out
    assert not fake_launcher.exists(), "the dry run started the launcher"
    command = out.rstrip().splitlines()[-1]
    assert "--depth 8 " in command and command.endswith(" python x.py") and "--dry-run" not in command


@pytest.mark.parametrize(
    "args",
    [
        ["--frobnicate", "8", "--dry-run", "python", "x.py"],
        ["--frobnicate", "python", "x.py"],
        ["-n", "2", "--some-flag", "value", "--dry-run"],
    ],
)
def test_an_unknown_flag_before_a_plain_word_is_ambiguous(
    fake_launcher: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["launch", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot tell whether" in err
    assert "=" in err and " -- " in err  # both ways out are named
    assert not fake_launcher.exists()


def test_a_known_value_option_never_eats_an_ezpz_option(fake_launcher: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["launch", "--depth", "--dry-run", "python", "x.py"]) == 2
    assert "takes 1 value" in capsys.readouterr().err
    assert not fake_launcher.exists()


# ---------------------------------------------------------------- property

OURS = {"-n": True, "--np": True, "-ppn": True, "--dry-run": False, "--json": False, "--timeout": True}
_word = st.from_regex(r"[a-z0-9./][a-z0-9./_]{0,8}", fullmatch=True)
_known = sorted(LAUNCHER_OPTIONS)


@st.composite
def _item(draw: st.DrawFn) -> tuple[str, list[str]]:
    kind = draw(st.sampled_from(["ours", "launcher", "launcher="]))
    if kind == "ours":
        opt = draw(st.sampled_from(sorted(OURS)))
        return "ours", [opt, draw(_word)] if OURS[opt] else [opt]
    name = draw(st.sampled_from(_known))
    dashes = "-" if len(name) == 1 else draw(st.sampled_from(["-", "--"]))
    if kind == "launcher=":
        return "launcher", [f"{dashes}{name}={draw(_word)}"]
    return "launcher", [f"{dashes}{name}", *(draw(_word) for _ in range(LAUNCHER_OPTIONS[name]))]


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(_item(), max_size=6),
    command=st.lists(st.one_of(_word, st.sampled_from(sorted(OURS))), max_size=4),
    first=_word,
)
def test_split_without_dashdash_keeps_every_ezpz_option_typed_before_the_command(
    items: list[tuple[str, list[str]]], command: list[str], first: str
) -> None:
    args = [tok for _, toks in items for tok in toks] + [first, *command]
    split = split_args(args, OURS)
    assert split.ours == [tok for kind, toks in items if kind == "ours" for tok in toks]
    assert split.launcher_flags == [tok for kind, toks in items if kind == "launcher" for tok in toks]
    assert split.command == [first, *command]


@settings(max_examples=200, deadline=None)
@given(before=st.lists(st.sampled_from(["-n=4", "--dry-run"]), max_size=3), word=_word)
def test_split_refuses_an_unknown_flag_followed_by_a_word(before: list[str], word: str) -> None:
    with pytest.raises(SpecError, match="cannot tell whether"):
        split_args([*before, "--zzq-unknown", word, "x.py"], {"-n": True, "--dry-run": False})


def test_submit_checks_typos_and_hands_lookalikes_on_in_the_script(
    fake_launcher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["submit", "--scheduler", "slurm", "--nodes", "1", "--time", "5:00"]
    assert main([*base, "--dryrun", "--", "python", "x.py"]) == 2
    assert "did you mean --dry-run?" in capsys.readouterr().err
    assert main([*base, "--dry-run", f"{PASS_OPTION}=--dryrun", "--", "python", "x.py"]) == 0
    launch_line = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert f"{PASS_OPTION}=--dryrun -- python x.py" in launch_line


@settings(max_examples=300, deadline=None)
@given(args=st.lists(st.one_of(st.text(max_size=12), st.sampled_from([*OURS, "--", "-", "--=", "=", "--dryrun"]))))
def test_split_of_hostile_words_is_a_split_or_one_spec_error(args: list[str]) -> None:
    try:
        split = split_args(args, OURS)
    except SpecError as exc:
        assert "\n" not in exc.line()
        return
    if "--" in args:  # after the first "--" everything is the command, untouched
        assert split.command == args[args.index("--") + 1 :]
    assert len(split.ours) + len(split.launcher_flags) + len(split.command) <= len(args)
