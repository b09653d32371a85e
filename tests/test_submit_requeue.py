"""``ezpz submit --requeue --signal SIG@SECONDS``: golden scripts, bad input, and a real Slurm requeue.

The scripts are rendered through the real Typer command and compared with
``tests/golden/submit/`` (rewrite with ``pytest tests/test_submit_requeue.py
--regen-golden`` and review the diff).
There is no PBS server for this machine: the PBS script is checked as golden
text only (``qsub`` is a fake on ``PATH`` where a submission is needed), and
its shell logic (trap, timer, wait loop) is the Slurm script's, which runs for
real.  The test marked ``slurm`` submits to
the local two-node cluster (``scripts/slurm-cluster.sh up``), interrupts the
job with ``scancel --signal=USR2 --batch`` (what ``--signal`` makes Slurm
send before the walltime ends), and follows it through its requeue.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import slurm
from hypothesis import given
from hypothesis import strategies as st

from ezpz.errors import SpecError
from ezpz.submit import WARNING_SIGNALS, parse_signal

GOLDEN = Path(__file__).parent / "golden" / "submit"
REPO = Path(__file__).resolve().parents[1]


# Site templates are picked by hostname; this machine's name must not pick one.
pytestmark = pytest.mark.usefixtures("laptop")


CASES: dict[str, list[str]] = {
    name: shlex.split(line)
    for name, line in {
        "slurm-requeue.sbatch": "--scheduler slurm --nodes 2 -ppn 2 --time 00:10:00 -q debug --requeue"
        " --max-requeues 2 --signal USR2@90 -- python train.py --checkpoint-dir ckpt",
        "perlmutter-signal.sbatch": "-t perlmutter --nodes 1 --time 30:00 -A m1234_g --signal SIGTERM@300"
        " -- python train.py",
        "aurora-requeue.pbs": "-t aurora --nodes 2 --time 1:00:00 -q debug -A datascience --requeue"
        " -- python3 train.py --checkpoint-dir /flare/proj/ckpt",
    }.items()
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_requeue_script(
    name: str, submit: Callable[[list[str]], tuple[int, str, str]], request: pytest.FixtureRequest
) -> None:
    code, out, err = submit(["--dry-run", *CASES[name]])
    assert code == 0, err
    path = GOLDEN / name
    if request.config.getoption("--regen-golden"):
        path.write_text(out)
    assert path.exists(), f"missing golden {path}; create it with pytest {__file__} --regen-golden and review it"
    assert out == path.read_text()


def test_slurm_script_asks_for_the_warning_and_requeues_on_75(
    submit: Callable[[list[str]], tuple[int, str, str]],
) -> None:
    code, out, _ = submit(["--dry-run", *CASES["slurm-requeue.sbatch"]])
    assert code == 0
    lines = out.splitlines()
    for expected in (
        "#SBATCH --signal=B:USR2@90",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "trap 'trap \"\" USR2; kill -USR2 $launch' USR2",
        "if [ $code -eq 75 ]; then",
        "    if [ $count -lt 2 ]; then",
        '        scontrol requeue "$SLURM_JOB_ID"',
        "exit $code",
    ):
        assert expected in lines, expected
    launch = next(line for line in lines if line.startswith("ezpz launch"))
    assert shlex.split(launch)[-5:] == ["python", "train.py", "--checkpoint-dir", "ckpt", "&"]


def test_pbs_script_times_the_warning_and_resubmits_its_kept_copy(
    submit: Callable[[list[str]], tuple[int, str, str]],
) -> None:
    code, out, _ = submit(["--dry-run", *CASES["aurora-requeue.pbs"]])
    assert code == 0
    lines = out.splitlines()
    assert "#PBS -r y" in lines
    # --requeue alone: the warning is USR2 120 s before the 1 h walltime.
    assert "(sleep 3480 && kill -USR2 $$) &" in lines
    resubmit = next(line for line in lines if "qsub" in line)
    assert resubmit.strip().startswith("qsub -v EZPZ_REQUEUE_COUNT=$((count + 1))")
    assert resubmit.strip().endswith('.ezpz.pbs"')
    assert "    count=${EZPZ_REQUEUE_COUNT:-0}" in lines


def test_pbs_requeue_keeps_the_script_it_submits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    """qsub is a fake on PATH (no PBS server here): the script it got is kept where the job resubmits it."""
    fake = tmp_path / "bin" / "qsub"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/qsub-args\necho 123.pbs-server\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    code, out, err = submit(CASES["aurora-requeue.pbs"])
    assert (code, out.strip()) == (0, "123.pbs-server"), err
    submitted = Path((tmp_path / "qsub-args").read_text().split()[-1])
    assert submitted.parent == tmp_path and submitted.name.endswith(".ezpz.pbs")
    text = submitted.read_text()
    assert f'"$PBS_O_WORKDIR/{submitted.name}"' in text


BAD = [
    (["--signal", "USR2"], "--signal is not SIG@SECONDS (given 'USR2'); write SIG@SECONDS, e.g. --signal USR2@120"),
    (["--signal", "USR2@"], "--signal is not SIG@SECONDS (given 'USR2@')"),
    (["--signal", "@120"], "--signal is not SIG@SECONDS"),
    (["--signal", "USR2@-5"], "--signal is not SIG@SECONDS"),
    (["--signal", "USR1@120"], "--signal USR1 is NCCL's signal"),
    (["--signal", "KILL@120"], "unknown or unusable signal SIGKILL (given 'KILL@120'); write SIG@SECONDS"),
    (["--signal", "USR2@0"], "lead time must be 1–65535 seconds"),
    (["--signal", "USR2@600"], "--signal lead time 600 s is not shorter than the walltime 00:10:00"),
    (["--requeue", "--time", "00:01:30"], "--signal lead time 120 s is not shorter than the walltime 00:01:30"),
    (["--max-requeues", "0"], "--max-requeues must be 1–100 (given 0)"),
    (["--max-requeues", "101"], "--max-requeues must be 1–100 (given 101)"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[needle for _, needle in BAD])
def test_bad_signal_or_requeue_is_one_line_exit_2(
    args: list[str], needle: str, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    base = ["--scheduler", "slurm", "--nodes", "1", "--time", "00:10:00"]
    code, out, err = submit([*base, *args, "--dry-run", "--", "python3", "train.py"])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert needle in err


def _site(tmp_path: Path, site_requeue: bool, queue_requeue: bool) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        'description = "a site for the test"\nscheduler = "slurm"\n\n'
        f"[submit]\nrequeue = {str(site_requeue).lower()}\n\n"
        f'[submit.queues.preempt]\nmax_nodes = 4\nmax_walltime = "02:00:00"\nrequeue = {str(queue_requeue).lower()}\n\n'
        '[submit.queues.regular]\nmax_nodes = 4\nmax_walltime = "02:00:00"\n'
    )
    return path


def test_requeue_in_a_queue_that_forbids_it_is_one_line(
    tmp_path: Path, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    site = _site(tmp_path, site_requeue=True, queue_requeue=False)
    args = ["-t", str(site), "--time", "10:00", "-q", "preempt", "--requeue", "--dry-run", "--", "python3", "t.py"]
    code, out, err = submit(args)
    assert (code, out) == (2, "")
    assert (
        err
        == "error: queue 'preempt' of template site does not allow jobs to requeue (given '--requeue'); queues that do: regular\n"
    )
    # Without --requeue the same queue is fine.
    assert submit([a for a in args if a != "--requeue"])[0] == 0


def test_requeue_at_a_site_that_forbids_it_is_one_line(
    tmp_path: Path, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    site = _site(tmp_path, site_requeue=False, queue_requeue=True)
    code, out, err = submit(
        ["-t", str(site), "--time", "10:00", "-q", "regular", "--requeue", "--dry-run", "--", "python3", "t.py"]
    )
    assert (code, out) == (2, "")
    assert err == "error: template site does not allow jobs to requeue (given '--requeue'); submit without --requeue\n"


@pytest.mark.parametrize("name", WARNING_SIGNALS)
def test_every_warning_signal_parses_in_each_spelling(name: str) -> None:
    for text in (f"{name}@60", f"SIG{name}@60", f"B:{name}@60", f"{name.lower()}@60"):
        assert parse_signal(text) == (name, 60)


@given(st.text(max_size=30))
def test_any_signal_text_parses_or_is_one_spec_error(text: str) -> None:
    try:
        name, lead = parse_signal(text)
    except SpecError as exc:
        assert "\n" not in exc.line()
    else:
        assert name in WARNING_SIGNALS and 1 <= lead <= 65535


# ---------------------------------------------------------------- real Slurm


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10)
    return dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv)


@pytest.mark.slurm
def test_slurm_job_saves_at_the_warning_requeues_itself_and_resumes(tmp_path: Path) -> None:
    """The must-hold on the real cluster: warned, saved, requeued (Restarts=1), resumed, completed.

    The warning is sent with ``scancel --signal=USR2 --batch`` (what
    ``--signal=B:USR2@…`` makes Slurm send before the walltime), so the test
    does not wait for a walltime.  A requeued job waits for its credential
    to expire (about 120 s) before it is eligible again; the test moves its
    start time to now with ``scontrol update`` to skip that wait (2 s after
    the requeue, see below).
    """
    slurm.require_cluster()
    env = slurm.slurm_env(
        {
            "EZPZ_LOG_FROM_ALL_RANKS": "1",
            "WANDB_MODE": "disabled",
            "PYTHONUNBUFFERED": "1",
            "EZPZ_PROGRESS": "lines",
            "EZPZ_PROGRESS_EVERY": "1",
        }
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "job.out"
    # 400 steps (a few seconds): the warning, sent at step 5, must reach the
    # ranks before they finish, however loaded the machine.
    example = [
        sys.executable,
        str(REPO / "examples" / "train_transformer.py"),
        *shlex.split("--random --layers 1 --heads 2 --dim 32 --seq-len 16 --batch-size 4 --max-steps 400"),
        *shlex.split("--save-every 1000 --eval-batches 1 --sample-tokens 4"),
        "--checkpoint-dir",
        str(ckpt),
    ]
    submit = [
        sys.executable, "-m", "ezpz", "submit", "--scheduler", "slurm", "--nodes", "1", "-n", "2",
        "--time", "00:05:00", "--requeue", "--max-requeues", "1", "--signal", "USR2@60",
        "--job-name", "ezpz-requeue", "--output", str(log), "--", *example,
    ]  # fmt: skip
    done = subprocess.run(submit, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    try:
        deadline = time.monotonic() + 120
        while "step 5/400 " not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"the job never reached step 5: {_job(job)}"
            time.sleep(0.1)
        subprocess.run(["scancel", "--signal=USR2", "--batch", job], check=True, timeout=10)
        deadline = time.monotonic() + 120
        while _job(job).get("Restarts") != "1" or _job(job).get("JobState") != "PENDING":
            assert time.monotonic() < deadline, f"the job did not requeue: {_job(job)}\n{log.read_text()}"
            time.sleep(0.5)
        # slurmd revoked the old credential at the requeue, to the second; a
        # credential issued in that same second counts as revoked too ("Job
        # credential revoked", the job FAILS), so the start moves only after it.
        time.sleep(2)
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=10)
        deadline = time.monotonic() + 300
        while (state := _job(job).get("JobState")) != "COMPLETED":
            assert state in ("PENDING", "RUNNING", "COMPLETING"), f"{state}\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the requeued job did not complete: {_job(job)}"
            time.sleep(0.5)
        info = _job(job)
    finally:
        subprocess.run(["scancel", job], timeout=10)
    text = log.read_text()
    assert info["Restarts"] == "1" and info["ExitCode"] == "0:0", info
    stops = [line for line in text.splitlines() if "stopped at step" in line]
    assert len(stops) == 2, text  # both ranks, the same step
    k = {int(line.split("stopped at step ")[1].split()[0]) for line in stops}
    assert len(k) == 1, stops
    step = k.pop()
    assert "ezpz: the ranks stopped at the warning; requeue 1 of 1" in text
    assert f"resumed from step {step}" in text
    assert "step 400/400 " in text


def test_script_exits_with_the_launch_status_however_fast_the_launch_stops(
    tmp_path: Path, submit: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    """The warning trap interrupts ``wait``; the script must still exit with ezpz launch's own status.

    Run for real in bash, 30 times, with a fake ``ezpz`` on PATH that, on
    SIGUSR2, signals the batch shell once more (a second warning: the PBS
    timer and ``qsig``, or ``--signal`` and a manual ``scancel --signal``)
    and exits 75 at once.  Planted bugs this fails on: taking the
    interrupted wait's 140 for the launch's status (the script before this
    test: 140 in some of the 30 runs), and a trap that stays armed, where
    bash 5.2 loses the status of a child that exits while the second trap
    runs (255).
    """
    code, out, err = submit(
        ["--scheduler", "slurm", "--nodes", "1", "--time", "00:10:00", "--signal", "USR2@60", "--dry-run"]
        + ["--", "python3", "train.py"]
    )  # fmt: skip
    assert code == 0, err
    script = tmp_path / "job.sbatch"
    script.write_text(out)
    ready = tmp_path / "ready"
    fake = tmp_path / "bin" / "ezpz"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/bash\ntrap 'kill -USR2 $PPID; exit 75' USR2\ntouch {ready}\nwhile :; do :; done\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    codes = []
    for _ in range(30):
        ready.unlink(missing_ok=True)
        job = subprocess.Popen(["bash", str(script)], env=env)
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "the fake ezpz launch never started"
            time.sleep(0.01)
        job.send_signal(signal.SIGUSR2)
        codes.append(job.wait(timeout=30))
    assert set(codes) == {75}, codes
