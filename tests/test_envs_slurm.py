"""``ezpz yeet-env`` on the real two-node Slurm cluster (``scripts/slurm-cluster.sh up``).

``salloc -N2 --ntasks-per-node=1`` gives a real allocation; yeet-env renders one
``srun`` task per node, and each node (``SLURMD_NODENAME`` n1/n2, both on this
machine) writes its copy under ``{host}``.  Skips locally, fails in CI, when the
cluster is down.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import slurm

pytestmark = pytest.mark.slurm


def test_yeet_env_on_two_slurm_nodes(tmp_path: Path) -> None:
    slurm.require_cluster()
    src = tmp_path / "slurm-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(src)], check=True)
    (src / "bin" / "hello").write_text(f"#!{src}/bin/python\nprint('hi')\n")
    (src / "bin" / "hello").chmod(0o755)
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "ezpz",
        "yeet-env",
        "--src",
        str(src),
        "--dst",
        f"{tmp_path}/{{host}}/env",
        "--launcher-flags",
        "--mpi=pmi2",
        "--report",
        str(report),
    ]
    done = slurm.in_allocation(command, nodes=2, ppn=1, limit_s=90)
    assert done.returncode == 0, done.stderr[-2000:]
    activate = shlex.quote(f"{tmp_path}/{{host}}/env/bin/activate")
    assert done.stdout.strip().splitlines()[-1] == f"source {activate}"
    results = json.loads(report.read_text())
    assert sorted((r["host"], r["ok"]) for r in results) == [("n1", True), ("n2", True)]
    for node in ("n1", "n2"):
        copy = tmp_path / node / "env"
        assert (copy / "bin" / "hello").read_text().startswith(f"#!{copy}/bin/python\n")
        shell = f"source {copy}/bin/activate && python -c 'import sys; print(sys.prefix)'"
        out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(copy)
