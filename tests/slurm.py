"""Helpers for tests that run against the real local Slurm cluster.

The cluster is two fake nodes (``n1``, ``n2``) on this machine, brought up by
``scripts/slurm-cluster.sh up``.  Every call into Slurm here is bounded by a
timeout so that a broken cluster fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UP_COMMAND = "scripts/slurm-cluster.sh up"
NODES = ("n1", "n2")
PYTHON = sys.executable
VENV_BIN = Path(sys.executable).parent


def slurm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without any ``SLURM_*`` variable, plus ``extra``.

    A test run from inside some other allocation must not leak that job into
    the one the test creates.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(extra or {})
    return env


def cluster_problem() -> str | None:
    """Say why the local cluster is not usable, or return ``None`` when both nodes are up."""
    if shutil.which("sinfo") is None:
        return "sinfo not found (slurm-wlm not installed)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"],
            capture_output=True,
            text=True,
            timeout=10,
            env=slurm_env(),
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    states = dict(line.split(None, 1) for line in out.stdout.split("\n") if line.strip())
    usable = {"idle", "mix", "alloc"}
    bad = {n: states.get(n, "missing") for n in NODES if states.get(n) not in usable}
    return f"nodes not up: {bad}" if bad else None


def require_cluster() -> None:
    """Skip (locally) or fail (when ``$CI`` is set) unless the two-node cluster is up."""
    problem = cluster_problem()
    if problem is None:
        return
    message = f"local Slurm cluster missing: {problem}; bring it up with `{UP_COMMAND}` (as root)"
    if os.environ.get("CI"):
        pytest.fail(f"CI requires Slurm: {message}")
    pytest.skip(message)


def scontrol_hostnames(nodelist: str) -> list[str]:
    """Expand ``nodelist`` with real ``scontrol show hostnames`` (no job needed)."""
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        env=slurm_env(),
    )
    return out.stdout.split()


def scontrol_hostlist(hosts: Sequence[str]) -> str:
    """Compress ``hosts`` as Slurm writes ``SLURM_JOB_NODELIST`` (``scontrol show hostlist``)."""
    out = subprocess.run(
        ["scontrol", "show", "hostlist", ",".join(hosts)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        env=slurm_env(),
    )
    return out.stdout.strip()


def salloc_argv(nodes: int = 2, ppn: int = 2, limit_s: int = 60) -> list[str]:
    """Return ``timeout … salloc -N… --ntasks-per-node=…`` bounded in queueing and run time."""
    return [
        "timeout",
        "-k",
        "5",
        str(limit_s),
        "salloc",
        f"-N{nodes}",
        f"--ntasks-per-node={ppn}",
        "--immediate=10",
        "--time=2",
    ]


def in_allocation(
    command: Sequence[str],
    *,
    nodes: int = 2,
    ppn: int = 2,
    limit_s: int = 60,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` inside a fresh ``salloc`` allocation and return its result."""
    return subprocess.run(
        [*salloc_argv(nodes, ppn, limit_s), *command],
        capture_output=True,
        text=True,
        timeout=limit_s + 15,
        cwd=cwd or REPO,
        env=slurm_env(extra_env),
    )


def json_objects(text: str) -> list[dict[str, str]]:
    """Return every flat JSON object in ``text``, parsed.

    Launchers forward each rank's output in chunks, so two ranks' lines can end
    up on one line; each object is one ``write`` and stays whole.
    """
    return [json.loads(obj) for obj in re.findall(r"\{[^{}]*\}", text)]


def job_steps(job_id: str) -> list[str]:
    """Return the running steps of ``job_id`` in ``squeue`` (batch/extern/interactive excluded)."""
    out = subprocess.run(
        ["squeue", "-h", "--steps", "-j", job_id, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=10,
        env=slurm_env(),
    )
    if out.returncode != 0:  # the job is gone: nothing of it runs
        return []
    return [s for s in out.stdout.split() if s.rsplit(".", 1)[-1].isdigit()]


def pid_alive(pid: int) -> bool:
    """Say whether ``pid`` names a live process (zombies count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.2 s; fail the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc``'s whole process group (cleanup after a failed test)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# Each rank prints one JSON line: who it is, where it runs, and (with torch) the
# gloo all_reduce sum of rank + 1 over every rank.
PAYLOAD = r"""
import json, os, sys
keys = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        "SLURM_NODEID", "SLURMD_NODENAME", "SLURM_PROCID", "SLURM_JOB_NODELIST"]
row = {k: os.environ.get(k) for k in keys}
if "--allreduce" in sys.argv:
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    row["sum"] = t.item()
    dist.destroy_process_group()
print(json.dumps(row), flush=True)
"""

# Each rank records its pid in DIR/rank-<pid>, then sleeps until killed.
SLEEPER = r"""
import os, sys, time
from pathlib import Path
Path(sys.argv[1], f"rank-{os.getpid()}").touch()
time.sleep(120)
"""
