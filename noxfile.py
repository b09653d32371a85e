"""Developer sessions: tests, lint, typecheck, docs, bench.

``nox`` (lint, typecheck, docs, tests) is the README's test command and what
``.ci/run`` runs.
torch 2.13.0 is installed first: it is the CPU build this project is tested
with, and a bare ``torch`` requirement would pull a multi-GB CUDA build.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[all,test]")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", *session.posargs)


#: Tool versions, the same in nox, pre-commit (.pre-commit-config.yaml) and DEVELOPMENT.md.
RUFF = "ruff==0.17.6"
PYRIGHT = "pyright==1.1.414"
MKDOCS = "mkdocs-material>=9.5"
#: Everything ruff checks and formats.
SOURCES = ("ezpz", "tests", "benchmarks", "examples", "docs", "noxfile.py")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint (with import sorting) and ruff format, as configured in pyproject.toml."""
    session.install(RUFF)
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Pyright over ezpz/ with the [tool.pyright] settings, against the installed extras."""
    _install(session)
    session.install(PYRIGHT)
    session.run("pyright", *session.posargs)


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
}


@nox.session
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
    _install(session)
    for name in wanted:
        session.run(*BENCHMARKS[name])
