"""``ezpz submit``: batch scripts (golden text), request checks, submission.

The PBS and Slurm scripts are rendered through the real Typer command
(``ezpz submit ... --dry-run``) and compared with ``tests/golden/submit/``.
A missing golden file fails; rewrite them with ``pytest tests/test_submit.py
--regen-golden`` and review the diff.  There is no PBS server for this machine, so ``qsub`` is a
fake script on ``PATH`` that records what it was given (mocked); ``sbatch``
runs for real against the local two-node cluster (``scripts/slurm-cluster.sh
up``) in the test marked ``slurm``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ezpz.errors import SchedulerError, SpecError, TemplateError
from ezpz.launch.templates import find_template, template_files
from ezpz.model.batch import SubmitRequest, SubmitSettings, format_walltime, parse_walltime, submit_settings
from ezpz.plugins.manager import schedulers
from ezpz.plugins.registry import pick
from ezpz.submit import check_request, render_script

GOLDEN = Path(__file__).parent / "golden" / "submit"


# Site templates are picked by hostname; this machine's name must not pick one.
pytestmark = pytest.mark.usefixtures("laptop")


# name -> ezpz submit arguments, as a shell would split them (--dry-run is added).
CASES: dict[str, list[str]] = {
    name: shlex.split(line)
    for name, line in {
        "aurora.pbs": "-t aurora --nodes 2 --time 1:00:00 -q debug -A datascience -n 24 -ppn 12"
        " -- python3 train.py --lr 0.1",
        "aurora-scaling.pbs": "-t aurora -nh 16 --time 45:00 -q debug-scaling -A datascience --job-name scale16"
        " --output logs/scale16.log --cpu-bind depth --no-vni -x 'FOO=bar baz'"
        " -- python3 -c \"print('a b')\" -n 5 --help",
        "polaris.pbs": "-t polaris --nodes 4 --time 00:30:00 --queue debug-scaling --account myproj"
        " --filesystems home:grand:eagle --timeout 600 --retries 1 -- python3 train.py",
        "perlmutter.sbatch": "-t perlmutter --nodes 2 --time 30:00 -A m1234_g -- python train.py",
        "frontier-debug.sbatch": "-t frontier -N 1 --time 2:00:00 -q debug -A abc123 -ppn 8 -- python train.py",
        "slurm-plain.sbatch": "--scheduler slurm --nodes 2 -ppn 2 --time 00:02:00 -q debug"
        " -- python -c \"import os; print(os.environ['RANK'])\"",
    }.items()
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(
    name: str, submit: Callable[[list[str]], tuple[int, str, str]], request: pytest.FixtureRequest
) -> None:
    args = CASES[name]
    code, out, err = submit(["--dry-run", *args])
    assert code == 0, err
    path = GOLDEN / name
    if request.config.getoption("--regen-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out)
    assert path.exists(), (
        f"missing golden {path}; create it with pytest tests/test_submit.py --regen-golden and review it"
    )
    assert out == path.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_launch_line_keeps_the_command(name: str, submit: Callable[[list[str]], tuple[int, str, str]]) -> None:
    """The script's last line parses back to ezpz launch ... -- exactly the user's command."""
    args = CASES[name]
    code, out, _ = submit(["--dry-run", *args])
    assert code == 0
    line = shlex.split(out.rstrip("\n").splitlines()[-1])
    assert line[:2] == ["ezpz", "launch"]
    assert line[line.index("--") + 1 :] == args[args.index("--") + 1 :]


def test_pbs_header_fields(submit: Callable[[list[str]], tuple[int, str, str]]) -> None:
    code, out, _ = submit(["--dry-run", *CASES["polaris.pbs"]])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#!/bin/bash -l"
    for expected in (
        "#PBS -l select=4:system=polaris",
        "#PBS -l walltime=00:30:00",
        "#PBS -l filesystems=home:grand:eagle",
        "#PBS -q debug-scaling",
        "#PBS -A myproj",
        'cd "$PBS_O_WORKDIR"',
        "module load conda",
    ):
        assert expected in lines
    assert lines[-1] == "ezpz launch -t polaris --timeout 600.0 --retries 1 -- python3 train.py"


def test_env_template_is_carried_into_the_job(
    submit: Callable[[list[str]], tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template chosen by EZPZ_TEMPLATE is named on the launch line (PBS jobs do not inherit the environment)."""
    monkeypatch.setenv("EZPZ_TEMPLATE", "aurora")
    code, out, _ = submit(["--time", "10:00", "-q", "debug", "-A", "p", "--dry-run", "--", "python3", "x.py"])
    assert code == 0
    assert "#PBS -l filesystems=flare:home" in out.splitlines()
    assert out.splitlines()[-1] == "ezpz launch -t aurora -- python3 x.py"


def test_account_from_environment(
    submit: Callable[[list[str]], tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EZPZ_ACCOUNT", "envproj")
    code, out, _ = submit(["-t", "aurora", "--time", "10:00", "-q", "debug", "--dry-run", "--", "python3", "x.py"])
    assert code == 0
    assert "#PBS -A envproj" in out.splitlines()


BAD = [
    (["-t", "aurora", "--time", "1:0:0:0", "-q", "debug", "-A", "p"], "walltime is not [[HH:]MM:]SS"),
    (["-t", "aurora", "--time", "ten", "-q", "debug", "-A", "p"], "walltime is not [[HH:]MM:]SS"),
    (["-t", "aurora", "--time", "1:75:00", "-q", "debug", "-A", "p"], "below 60"),
    (["-t", "aurora", "--time", "00:00", "-q", "debug", "-A", "p"], "longer than zero"),
    (
        ["-t", "aurora", "--time", "10:00", "--nodes", "0", "-q", "debug", "-A", "p"],
        "nodes must be at least 1 (given 0)",
    ),
    (
        ["-t", "aurora", "--time", "10:00", "--nodes", "-3", "-q", "debug", "-A", "p"],
        "nodes must be at least 1 (given -3)",
    ),
    (
        ["-t", "aurora", "--time", "10:00", "-q", "debg", "-A", "p"],
        "valid: debug, debug-scaling, prod; did you mean 'debug'?",
    ),
    (["-t", "aurora", "--time", "10:00", "-A", "p"], "pass --queue, one of: debug (1–2 nodes, ≤ 01:00:00)"),
    (
        ["-t", "aurora", "--time", "10:00", "--nodes", "40", "-q", "debug", "-A", "p"],
        "debug takes 1–2 nodes, ≤ 01:00:00",
    ),
    (
        ["-t", "aurora", "--time", "10:00", "--nodes", "16", "-q", "prod", "-A", "p"],
        "prod takes 32–2048 nodes, ≤ 18:00:00",
    ),
    (
        ["-t", "aurora", "--time", "2:00:00", "-q", "debug", "-A", "p"],
        "walltime 02:00:00 is longer than queue 'debug' allows",
    ),
    (["-t", "polaris", "--time", "10:00", "-q", "debug"], "no account given; template polaris requires one"),
    (["-t", "aurora", "-q", "debug", "-A", "p"], "no walltime given"),
    (["-t", "aurora", "-nh", "4", "--nodes", "2", "--time", "10:00", "-q", "debug", "-A", "p"], "need 4 nodes"),
    (["--scheduler", "local", "--time", "10:00"], "the local scheduler has no batch system"),
    (["-t", "aurora", "--time", "10:00", "-q", "debug", "-A", "p\n#PBS -q prod"], "--account must be one word"),
    (
        ["-t", "aurora", "--time", "10:00", "-q", "debug", "-A", "p", "--job-name", "my job"],
        "--job-name must be one word",
    ),
    (["-t", "nosuchsite", "--time", "10:00"], "unknown template"),
    (["-t", "aurora", "-n", "7", "-ppn", "2", "--time", "10:00", "-q", "debug", "-A", "p"], "not divisible"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[needle for _, needle in BAD])
def test_bad_input_is_one_line_exit_2(
    args: list[str], needle: str, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    code, out, err = submit([*args, "--dry-run", "--", "python3", "train.py"])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert needle in err


def test_no_command_is_one_line_exit_2(submit: Callable[[list[str]], tuple[int, str, str]]) -> None:
    code, out, err = submit(["-t", "aurora", "--time", "10:00", "-q", "debug", "-A", "p", "--dry-run"])
    assert (code, out) == (2, "")
    assert (
        err
        == "error: no command to submit; put it after --: ezpz submit --nodes 2 --time 01:00:00 -- python train.py\n"
    )


def test_bad_submit_table_is_a_template_error(
    tmp_path: Path, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        'scheduler = "pbs"\n[submit.queues.small]\nmin_nodes = 4\nmax_nodes = 2\nmax_walltime = "01:00:00"\n'
    )
    code, _, err = submit(["-t", str(site), "--time", "10:00", "--dry-run", "--", "python3", "x.py"])
    assert code == 2 and err.count("\n") == 1
    assert "invalid [submit] table in template site: queues.small: min_nodes=4 is more than max_nodes=2" in err


@pytest.mark.parametrize("name", sorted(template_files()))
def test_builtin_submit_tables_are_valid(name: str) -> None:
    template = find_template(name)
    settings = submit_settings(template)
    if template.scheduler in ("pbs", "slurm"):
        assert template.submit, f"site template {name} has no [submit] table"
    if template.scheduler == "pbs":
        assert settings.account_required, "ALCF jobs need a project (-A)"


def test_aurora_queue_limits_match_the_site() -> None:
    queues = submit_settings(find_template("aurora")).queues
    got = {name: (q.min_nodes, q.max_nodes, q.max_seconds) for name, q in queues.items()}
    assert got == {"debug": (1, 2, 3600), "debug-scaling": (2, 31, 3600), "prod": (32, 2048, 18 * 3600)}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45", 45),
        ("90", 90),
        ("05:00", 300),
        ("90:00", 5400),
        ("1:00:00", 3600),
        ("18:00:00", 64800),
        ("100:00:01", 360001),
    ],
)
def test_parse_walltime(text: str, seconds: int) -> None:
    assert parse_walltime(text) == seconds
    assert parse_walltime(format_walltime(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "1:2:3:4", "1h", "-5", "1.5:00", "01:60:00", "00:00:00", "01::00", " : "])
def test_parse_walltime_rejects(text: str) -> None:
    with pytest.raises(SpecError):
        parse_walltime(text)


def test_check_request_unlisted_queue_passes_when_the_site_lists_none() -> None:
    assert check_request(SubmitRequest(nodes=3, walltime=60, queue="anything"), SubmitSettings()) == "anything"


def test_render_is_deterministic() -> None:
    request = SubmitRequest(nodes=2, walltime=600, queue="debug", account="p")
    settings = submit_settings(find_template("aurora"))
    first = render_script("pbs", request, settings, ["ezpz", "launch", "--", "true"], template="aurora")
    second = render_script("pbs", request, settings, ["ezpz", "launch", "--", "true"], template="aurora")
    assert first == second
    assert first.submit_argv == ("qsub",)


def test_batch_scheduler_choice_order(
    pbs_job: Callable[..., dict[str, str]], slurm_job: Callable[..., dict[str, str]]
) -> None:
    """The one scheduler rule (pick) with batch=True: named, template, inside a job, then on PATH."""
    adapters = schedulers()
    aurora = find_template("aurora")
    in_slurm, in_pbs = slurm_job("n1", "1"), pbs_job(("n1",), "1")

    def chosen(name: str | None, template, environ, on_path) -> tuple[str, str]:
        adapter, why = pick(adapters, environ, name, template=template, batch=True, which=on_path.get)
        return adapter.name, why

    assert chosen("slurm", aurora, in_pbs, {})[0] == "slurm"
    assert chosen(None, aurora, in_slurm, {})[0] == "pbs"
    assert chosen(None, None, in_slurm, {})[0] == "slurm"
    assert chosen(None, None, in_pbs, {})[0] == "pbs"
    assert chosen(None, None, {}, {"qsub": "/usr/bin/qsub"}) == ("pbs", "qsub on PATH")
    with pytest.raises(SchedulerError, match="cannot tell which batch system"):
        chosen(None, None, {}, {"qsub": "/a/qsub", "sbatch": "/a/sbatch"})
    with pytest.raises(SchedulerError):
        chosen(None, None, {}, {})


def test_submit_settings_without_template() -> None:
    assert submit_settings(None) == SubmitSettings()


def test_bad_default_queue_is_refused() -> None:
    template = find_template("aurora").model_copy(
        update={"submit": {**find_template("aurora").submit, "default_queue": "nope"}}
    )
    with pytest.raises(TemplateError, match="default_queue 'nope'"):
        submit_settings(template)


# A stand-in for PBS's qsub (there is no PBS server here): it records the
# script it was given and prints a job id the way PBS does, or fails.
FAKE_QSUB = """#!/bin/sh
cp "$1" "{record}"
if [ -n "$FAKE_QSUB_FAIL" ]; then echo "qsub: Job violates queue and/or server resource limits" >&2; exit 38; fi
echo "8123456.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
"""


@pytest.fixture
def fake_qsub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "submitted.sh"
    qsub = bindir / "qsub"
    qsub.write_text(FAKE_QSUB.format(record=record))
    qsub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_submit_prints_job_id_and_sends_the_dry_run_script(
    fake_qsub: Path, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("ezpz-submit-*.sh"))
    code, out, err = submit(CASES["aurora.pbs"])
    assert code == 0, err
    assert out == "8123456.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov\n"
    assert fake_qsub.read_text() == (GOLDEN / "aurora.pbs").read_text()
    assert set(scratch.glob("ezpz-submit-*.sh")) == before, "the temporary script was left behind"


def test_refused_submission_is_one_line(
    fake_qsub: Path, submit: Callable[[list[str]], tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_QSUB_FAIL", "1")
    code, out, err = submit(CASES["aurora.pbs"])
    assert (code, out) == (2, "")
    assert err == "error: qsub refused the job (given 'qsub: Job violates queue and/or server resource limits')\n"


def test_missing_qsub_is_one_line(
    submit: Callable[[list[str]], tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = submit(CASES["aurora.pbs"])
    assert (code, out) == (2, "")
    assert err.startswith("error: qsub not found on PATH") and err.count("\n") == 1


@pytest.mark.slurm
def test_submit_runs_to_completion_on_real_slurm(tmp_path: Path) -> None:
    """ezpz submit --nodes 2 on the local cluster: the job COMPLETES and its output shows 4 ranks on 2 nodes."""
    import slurm

    slurm.require_cluster()
    payload = (
        "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
        "('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'SLURM_NODEID')}), flush=True)"
    )
    env = slurm.slurm_env({"PATH": f"{slurm.VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
    env = {k: v for k, v in env.items() if not k.startswith("EZPZ_")}
    done = subprocess.run(
        [
            str(slurm.VENV_BIN / "ezpz"),
            "submit",
            "--nodes",
            "2",
            "-ppn",
            "2",
            "--time",
            "00:02:00",
            "--",
            "python",
            "-c",
            payload,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert job.isdigit(), done.stdout
    state = ""
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            show = subprocess.run(
                ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=10, env=env
            )
            fields = dict(f.split("=", 1) for f in show.stdout.split() if "=" in f)
            state = fields.get("JobState", "")
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"job {job} did not finish within 90 s (last state {state!r})")
    finally:
        if state not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            subprocess.run(["scancel", job], timeout=10, env=env)
    output = (tmp_path / f"ezpz-{job}.out").read_text()
    assert state == "COMPLETED", output
    rows = slurm.json_objects(output)
    assert sorted(int(r["RANK"]) for r in rows) == [0, 1, 2, 3], output
    assert {r["WORLD_SIZE"] for r in rows} == {"4"}
    assert sorted((r["SLURM_NODEID"], r["LOCAL_RANK"]) for r in rows) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
