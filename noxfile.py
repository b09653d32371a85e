"""Developer sessions: tests, lint, typecheck, docs, bench, mutate.

``nox`` (lint, typecheck, docs, tests) is the README's test command and what
``.ci/run`` runs.
torch 2.13.0 is installed first: it is the CPU build this project is tested
with, and a bare ``torch`` requirement would pull a multi-GB CUDA build.

The sessions that need torch and the package's extras (tests, typecheck,
bench) share one environment, ``.nox/shared`` (see :func:`_shared`), so a
fresh clone installs torch once; lint and docs keep their own small ones.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"
#: Tool versions, the same in nox, pre-commit (.pre-commit-config.yaml) and DEVELOPMENT.md.
RUFF = "ruff==0.17.6"
PYRIGHT = "pyright==1.1.414"
MKDOCS = "mkdocs-material>=9.5"
#: The one environment with torch, ``-e .[all,test]`` and pyright, for every session that needs them.
SHARED = Path(".nox") / "shared"


def _shared(session: nox.Session) -> None:
    """Create (once) and update the shared environment.

    nox gives every session its own virtualenv; these sessions declare
    ``venv_backend="none"`` and use this one instead.  ``pip install`` is a
    no-op when everything is already there, so reusing it costs seconds.
    """
    if not (_bin() / "python").exists():
        session.run_install(sys.executable, "-m", "venv", str(SHARED), external=True)
    pip = (str(_bin() / "python"), "-m", "pip", "install", "--quiet")
    session.run_install(*pip, TORCH, external=True)
    session.run_install(*pip, "-e", ".[all,test]", PYRIGHT, external=True)


def _bin() -> Path:
    return SHARED.resolve() / ("Scripts" if os.name == "nt" else "bin")


def _run_shared(session: nox.Session, program: str, *args: str) -> None:
    """Run ``program`` from the shared environment, with that environment first on PATH."""
    env = {"PATH": f"{_bin()}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(SHARED.resolve())}
    session.run(str(_bin() / program), *args, env=env, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (pytest), in the shared environment."""
    _shared(session)
    _run_shared(session, "pytest", *session.posargs)


#: Everything ruff checks and formats.
SOURCES = ("ezpz", "tests", "benchmarks", "examples", "docs", "noxfile.py")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint (with import sorting) and ruff format, as configured in pyproject.toml."""
    session.install(RUFF)
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """Pyright over ezpz/ with the [tool.pyright] settings, against the installed extras (shared environment)."""
    _shared(session)
    _run_shared(session, "pyright", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Check docs/cli.md against the CLI, then build the site with mkdocs --strict."""
    session.install("-e", ".")
    session.install(MKDOCS)
    session.run("python", "docs/gen_cli.py", "--check")
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{session.create_tmp()}/site")


#: benchmark script -> how it is started (some measure inside a multi-rank job).
#: ``nox -s bench -- launch history`` runs only those.
BENCHMARKS: dict[str, tuple[str, ...]] = {
    "bench_launch": ("python", "benchmarks/bench_launch.py"),
    "bench_history": ("python", "-m", "ezpz", "launch", "-n", "4", "--", "python", "benchmarks/bench_history.py"),
    "bench_wrap": ("python", "-m", "ezpz", "launch", "-n", "2", "--", "python", "benchmarks/bench_wrap.py"),
    "bench_train": ("python", "benchmarks/bench_train.py"),
    "bench_yeet": ("python", "benchmarks/bench_yeet.py"),
    "bench_checkpoint": ("python", "benchmarks/bench_checkpoint.py"),
    "bench_should_stop": (
        "python",
        "-m",
        "ezpz",
        "launch",
        "-n",
        "2",
        "--",
        "python",
        "benchmarks/bench_should_stop.py",
    ),
}


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Run benchmarks/bench_*.py (all, or those named in posargs); figures go to stdout and benchmarks/results/."""
    found = sorted(path.stem for path in Path("benchmarks").glob("bench_*.py"))
    unknown = sorted(set(found) - set(BENCHMARKS))
    if unknown:
        session.error(f"add {', '.join(unknown)} to BENCHMARKS in noxfile.py (how to start it)")
    wanted = [f"bench_{name.removeprefix('bench_')}" for name in session.posargs] or found
    missing = sorted(set(wanted) - set(found))
    if missing:
        session.error(f"no such benchmark: {', '.join(missing)}; valid: {', '.join(found)}")
    _shared(session)
    for name in wanted:
        _run_shared(session, *BENCHMARKS[name])


MUTMUT = "mutmut==3.8.1"
#: Mutant status -> counted as killed?  ("no tests": no selected test runs that code.)
_KILLED = {"killed": True, "timeout": True, "segfault": True, "caught by type check": True}


def mutation_scores(results: str) -> dict[str, Counter[str]]:
    """Per module, the count of each mutant status in ``mutmut results --all true`` output."""
    scores: dict[str, Counter[str]] = {}
    for line in results.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = re.split(r"\.x[_ǁ]", name, maxsplit=1)[0]
        scores.setdefault(module, Counter())[status] += 1
    return scores


@nox.session(venv_backend="none")
def mutate(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the pure core, configured in [tool.mutmut]; not a default session.

    Starts from scratch each time (mutmut's cache does not notice changed tests), prints the
    score per module and the survivors.  ``nox -s mutate -- 'ezpz.ranks*'`` mutates only those.
    """
    _shared(session)
    session.run_install(str(_bin() / "python"), "-m", "pip", "install", "--quiet", MUTMUT, external=True)
    shutil.rmtree("mutants", ignore_errors=True)
    env = {
        "PATH": f"{_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(SHARED.resolve()),
        "EZPZ_HYPOTHESIS_EXAMPLES": "30",
    }
    jobs = str(os.cpu_count() or 2)
    session.run(str(_bin() / "mutmut"), "run", "--max-children", jobs, *session.posargs, env=env, external=True)
    results = session.run(str(_bin() / "mutmut"), "results", "--all", "true", env=env, external=True, silent=True)
    total: Counter[str] = Counter()
    for module, counts in sorted(mutation_scores(str(results)).items()):
        total += counts
        killed = sum(n for status, n in counts.items() if _KILLED.get(status))
        rest = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if not _KILLED.get(status))
        session.log(
            f"{module}: {killed}/{counts.total()} killed ({100 * killed / counts.total():.1f} %){'; ' + rest if rest else ''}"
        )
    killed = sum(n for status, n in total.items() if _KILLED.get(status))
    session.log(f"all: {killed}/{total.total()} killed ({100 * killed / max(total.total(), 1):.1f} %)")
    for line in str(results).splitlines():
        if line.strip().endswith(": survived"):
            session.log(f"survivor: {line.strip().removesuffix(': survived')} (mutmut show NAME)")
