"""Shared fixtures: environment guard, PBS/Slurm environments under tmp_path, a fake machine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from ezpz.cli import main
from ezpz.launch.machine import Machine


@pytest.fixture(autouse=True)
def _guard_environ() -> Iterator[None]:
    """Fail any test that leaks changes to ``os.environ``."""
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    # pytest itself rewrites PYTEST_CURRENT_TEST at every phase (setup/call/teardown).
    before.pop("PYTEST_CURRENT_TEST", None)
    after.pop("PYTEST_CURRENT_TEST", None)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        os.environ.clear()
        os.environ.update(before)
        pytest.fail(f"test leaked changes to os.environ: {changed}")


#: The old spelling of ``--regen-golden``; now refused, so a stray export cannot rewrite the goldens.
REGEN_VAR = "EZPZ_REGEN_GOLDEN"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run while ``EZPZ_REGEN_GOLDEN`` is set (regeneration is ``--regen-golden`` only)."""
    if REGEN_VAR in os.environ:
        raise pytest.UsageError(
            f"{REGEN_VAR} is set ({os.environ[REGEN_VAR]!r}); golden files are rewritten only by"
            " `pytest tests/test_golden.py tests/test_submit.py --regen-golden`: unset it"
        )


@pytest.fixture(autouse=True)
def _run_dir_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Launches a test starts write their run directory under pytest's tmp, not into the repo."""
    monkeypatch.setenv("EZPZ_RUN_DIR", str(tmp_path_factory.mktemp("ezpz-run")))


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--regen-golden``: rewrite the golden files (tests/golden/expected, tests/golden/submit)."""
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files (tests/golden/expected, tests/golden/submit) instead of failing on a difference",
    )


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Machine]:
    """Return ``install(hostname=..., accelerators=N, how=..., cores=N)``: make :meth:`Machine.here` return a fake.

    Every resolve that is not handed a machine (the CLI, ``LaunchSpec.render``)
    then sees that hostname, that accelerator probe and that core count; the temporary
    directory, interpreter and port lookup stay this machine's.  Mocked
    because this machine has no site hostname and no GPUs.
    """

    def install(
        hostname: str = "testhost", accelerators: int = 0, how: str = "mocked probe", cores: int = 64
    ) -> Machine:
        real = Machine.here()
        machine = Machine(
            hostname=hostname,
            tmp_dir=real.tmp_dir,
            python=real.python,
            probe=lambda: (accelerators, how),
            cores=lambda _environ: cores,
        )
        monkeypatch.setattr(Machine, "here", classmethod(lambda cls: machine))
        return machine

    return install


@pytest.fixture
def no_job_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ: make sure no scheduler job, EZPZ_* setting or CPU_BIND leaks in."""
    for key in list(os.environ):
        if key.startswith(("PBS_", "SLURM_", "EZPZ_")) or key == "CPU_BIND":
            monkeypatch.delenv(key)


@pytest.fixture
def laptop(no_job_env: None, fake_machine: Callable[..., Machine]) -> None:
    """Outside any job, no EZPZ_* settings, on a host named ``laptop``: a hostname that picks no site template."""
    fake_machine(hostname="laptop")


@pytest.fixture
def submit(laptop: None, capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """Return ``run(args)``: ``ezpz submit ARGS`` in this process on the laptop, as (exit code, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        code = main(["submit", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def pbs_job(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Return ``make(hosts, jobid=..., **more)``: a PBS job's environment, its nodefile under tmp_path.

    Mocked: there is no PBS server here; a job is its ``PBS_JOBID`` and
    ``PBS_NODEFILE`` (one host per line, in order), which is all ezpz reads.
    """

    def make(
        hosts: Sequence[str] = ("x4000c0s0b0n0", "x4000c0s1b0n0"), jobid: str = "8123456.aurora-pbs-0001", **more: str
    ) -> dict[str, str]:
        nodefile = tmp_path / "nodefile"
        nodefile.write_text("".join(f"{host}\n" for host in hosts))
        return {"PBS_JOBID": jobid, "PBS_NODEFILE": str(nodefile), **more}

    return make


@pytest.fixture
def slurm_job() -> Callable[..., dict[str, str]]:
    """Return ``make(nodelist, jobid=..., **more)``: a Slurm job's environment as salloc/sbatch set it.

    For tests of reading it; real Slurm jobs run in tests/test_slurm_real.py.
    """

    def make(nodelist: str = "nid[001234-001235]", jobid: str = "31415926", **more: str) -> dict[str, str]:
        return {"SLURM_JOB_ID": jobid, "SLURM_JOB_NODELIST": nodelist, **more}

    return make
