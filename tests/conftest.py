"""Shared fixtures: environment guard, PBS/Slurm environments under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--regen-golden``: rewrite tests/golden/expected/*.json from the current rendering."""
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite the golden argv files (tests/golden/expected) instead of failing on a difference",
    )
