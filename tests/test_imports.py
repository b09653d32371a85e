"""The launch path never imports torch, mpi4py or wandb; missing extras name their pip extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ezpz.errors import MissingExtraError
from ezpz.extras import require

HEAVY = ("torch", "mpi4py", "wandb", "plotext", "datasets")


def test_dry_run_imports_nothing_heavy():
    code = (
        "import sys; from ezpz.cli import main\n"
        "rc = main(['launch', '--dry-run', '-n', '2', '--', 'python', 'x.py'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr


def test_import_ezpz_is_light():
    code = "import sys, ezpz; ezpz.LaunchSpec; print([m for m in ('torch', 'mpi4py', 'wandb', 'pydantic') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['pydantic']"


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("torch", "torch"),
        ("mpi4py", "mpi"),
        ("wandb", "wandb"),
        ("plotext", "plot"),
        ("datasets", "data"),
        ("pyinstrument", "profile"),
    ],
)
def test_missing_extra_names_the_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # simulates the extra not being installed
    with pytest.raises(MissingExtraError) as err:
        require(module, extra)
    assert f"pip install 'ezpz[{extra}]'" in err.value.line()
