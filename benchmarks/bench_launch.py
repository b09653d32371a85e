"""Launch-path benchmark: what ``ezpz launch`` costs on top of the launcher.

Run ``python benchmarks/bench_launch.py``.  It prints a table and writes every
sample to ``benchmarks/results/launch.json``.  Four measurements, each with
the two sides interleaved (A, B, A, B, ...) so that load from other processes
hits both alike, and each reported as a median:

1. ``ezpz launch --dry-run -- python x.py`` against a bare ``python -c pass``:
   wall time, CPU time and peak RSS, and the ratio (target: at most ~10x).
   Two checks go with it: the console command's ``-X importtime`` trace and the
   Python API's ``sys.modules`` must not contain torch, mpi4py or wandb.
2. ``ezpz launch --template aurora --dry-run --json`` inside a fake PBS job
   whose nodefile lists 10,624 hosts, against one listing 2 hosts: the extra
   milliseconds (target: at most ~50 ms), end to end and in-process.
3. A real 4-rank launch, ``ezpz launch -n 4 -- python payload.py``, against
   ``mpiexec -n 4 python payload.py`` with the same payload (a torch gloo
   ``all_reduce`` through ``env://`` rendezvous; target: within ~10%).
4. The same two launches with ``python -c pass`` as the payload: ezpz's fixed
   cost per launch in milliseconds.  Both real launches also run the plan
   ``ezpz launch`` renders straight from this script (no ``ezpz`` process), to
   split the extra cost into the per-rank part and the ``ezpz`` process.
5. Output path: 2 ranks each printing ``--lines`` lines through ``ezpz launch``
   (labels, console, per-rank logs) against raw ``mpiexec`` writing straight
   to a file: lines per second.

The reference tool's 2.6 s and 336 MB per launch are quoted from
``notes/sites.md``, not measured here.  Wall times on a shared 2-core machine
are noisy; CPU seconds (user + system of the whole process tree, from
``wait4``) are steadier and are reported beside them.

The script exits 1 when a run fails or a heavy module is imported on the
dry-run path; a missed speed target is reported, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ezpz.log import get_logger

log = get_logger("ezpz.bench")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "launch.json"
HEAVY = ("torch", "mpi4py", "wandb")
#: Quoted from notes/sites.md (reference ezpz v0.26.1); not measured here.
REFERENCE = {"wall_s": 2.6, "peak_rss_mb": 336.0, "python_c_pass_s": 0.02}
#: Seconds after which one benchmarked command is killed (a hung rendezvous).
RUN_LIMIT = 180.0
#: Hosts in the largest Aurora job the dry run must stay fast for.
AURORA_HOSTS = 10_624

PAYLOAD = '''\
"""Benchmark payload: one gloo all_reduce over env:// rendezvous.

Under ``ezpz launch`` the rank comes from RANK/WORLD_SIZE (set by the rank shim);
under raw ``mpiexec`` from MPICH's PMI_RANK/PMI_SIZE.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist

rank = int(os.environ.get("RANK") or os.environ["PMI_RANK"])
size = int(os.environ.get("WORLD_SIZE") or os.environ["PMI_SIZE"])
dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=size, timeout=timedelta(seconds=30))
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
assert value.item() == size * (size + 1) / 2, value
dist.destroy_process_group()
'''

#: Run as ``python -c API_PROBE torch mpi4py wandb``: render through the API, list heavy modules.
API_PROBE = """\
import json, sys
from ezpz import LaunchSpec
plan = LaunchSpec(command=["python", "x.py"]).render()
print(json.dumps({"argv": list(plan.argv), "heavy": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])}))
"""


@dataclass(frozen=True)
class Sample:
    """One finished process: wall seconds, CPU seconds of its tree, peak RSS."""

    wall_s: float
    cpu_s: float
    rss_mb: float


class RunFailed(RuntimeError):
    """A benchmarked command exited non-zero."""


def run_once(argv: Sequence[str], env: Mapping[str, str], stdout_to: Path | None = None) -> Sample:
    """Run ``argv`` to completion and measure it with ``wait4``.

    CPU time and peak RSS cover the process and every descendant it reaped
    (the launcher's proxies and ranks).  Output goes to ``stdout_to`` or is
    discarded.  The command runs in its own session; after :data:`RUN_LIMIT`
    seconds the whole session is killed.  A non-zero exit raises
    :class:`RunFailed` with stderr's tail.
    """
    with tempfile.TemporaryFile() as err, open(stdout_to or os.devnull, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=err, start_new_session=True)
        watchdog = threading.Timer(RUN_LIMIT, _kill_session, (proc.pid,))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_session(proc.pid)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise RunFailed(f"{' '.join(argv)} exited {proc.returncode} after {wall:.1f} s:\n{tail}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _kill_session(pid: int) -> None:
    """SIGKILL every process left in the session led by ``pid`` (ranks a dead launcher left)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def interleave(
    runs: int,
    *sides: tuple[Sequence[str], Mapping[str, str]],
    warmup: int = 1,
    fresh_env: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
    failures: list[str] | None = None,
) -> list[list[Sample]]:
    """Run every side in turn (A, B, A, B, ...) ``runs`` times each after ``warmup`` unmeasured rounds.

    ``fresh_env(env) -> env``, when given, is applied before every run (a new
    rendezvous port each time).  A failed run is retried once and its error
    appended to ``failures``; a second failure raises.
    """
    got: list[list[Sample]] = [[] for _ in sides]
    for i in range(warmup + runs):
        for side, (argv, env) in enumerate(sides):
            try:
                sample = run_once(argv, fresh_env(env) if fresh_env else env)
            except RunFailed as exc:
                if failures is None:
                    raise
                log.warning("run failed, retrying once: %s", str(exc).splitlines()[0])
                failures.append(str(exc))
                sample = run_once(argv, fresh_env(env) if fresh_env else env)
            if i >= warmup:
                got[side].append(sample)
    return got


def medians(samples: list[Sample]) -> dict[str, float]:
    """Median wall, CPU and RSS of ``samples``, plus the raw wall times."""
    return {
        "wall_s": statistics.median(s.wall_s for s in samples),
        "cpu_s": statistics.median(s.cpu_s for s in samples),
        "rss_mb": statistics.median(s.rss_mb for s in samples),
        "wall_min_s": min(s.wall_s for s in samples),
        "wall_samples_s": [round(s.wall_s, 4) for s in samples],
    }


def base_env() -> dict[str, str]:
    """This environment without scheduler or rank variables, with the venv's bin first on PATH.

    Both sides of every comparison get it, so ``ezpz`` and raw ``mpiexec``
    find the same launcher binary.
    """
    drop = ("PBS_", "SLURM_", "PMI_", "PALS_", "OMPI_", "EZPZ_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "CPU_BIND"):
        env.pop(key, None)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    # This machine sets PYTHONDONTWRITEBYTECODE=1, so every start compiled
    # ezpz's ~45 modules from source (~35 ms); an installed ezpz has its .pyc
    # files (pip writes them), and the warm-up round writes them here.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def ezpz_command() -> list[str]:
    """The ``ezpz`` console script beside this interpreter, else ``python -m ezpz``."""
    script = Path(sys.executable).with_name("ezpz")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ezpz"]


def heavy_imports_cli(env: Mapping[str, str]) -> dict[str, Any]:
    """Trace the console command's imports with ``-X importtime``; list heavy ones and the costliest."""
    argv = [sys.executable, "-X", "importtime", "-m", "ezpz", "launch", "--dry-run", "--", "python", "x.py"]
    done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((name.strip(), int(cumulative), len(name) - len(name.lstrip())))
    heavy = sorted({n for n, _, _ in rows if n.split(".")[0] in HEAVY})
    top = sorted((r for r in rows if r[2] == 1), key=lambda r: -r[1])[:6]
    return {
        "modules": len(rows),
        "heavy": heavy,
        "top_level_ms": {name: round(us / 1000, 1) for name, us, _ in top},
    }


def heavy_imports_api(env: Mapping[str, str]) -> dict[str, Any]:
    """Render through the Python API in a fresh interpreter and inspect ``sys.modules``."""
    done = subprocess.run(
        [sys.executable, "-c", API_PROBE, *HEAVY], env=dict(env), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_dry_run(runs: int, env: Mapping[str, str]) -> dict[str, Any]:
    """Benchmark 1: the dry run against a bare interpreter, with and without ``site``.

    ``python -c pass`` is the target's yardstick; it runs this environment's
    ``.pth`` files.  ``python -S -c pass`` skips them and shows how much of the
    yardstick they are.
    """
    dry = [*ezpz_command(), "launch", "--dry-run", "--", "python", "x.py"]
    bare = [sys.executable, "-c", "pass"]
    nosite = [sys.executable, "-S", "-c", "pass"]
    ezpz_s, bare_s, nosite_s = interleave(runs, (dry, env), (bare, env), (nosite, env))
    a, b, c = medians(ezpz_s), medians(bare_s), medians(nosite_s)
    return {
        "command": " ".join(dry),
        "baseline": " ".join(bare),
        "ezpz": a,
        "python_c_pass": b,
        "python_S_c_pass": c,
        "wall_ratio": a["wall_s"] / b["wall_s"],
        "cpu_ratio": a["cpu_s"] / b["cpu_s"],
        "rss_ratio": a["rss_mb"] / b["rss_mb"],
        "target_wall_ratio": 10.0,
    }


def aurora_hostname(i: int) -> str:
    """The ``i``-th host of a fake Aurora job (``x4000c0s0b0n0`` style, all distinct)."""
    return f"x{4000 + i // 256}c{(i // 64) % 4}s{(i // 8) % 8}b0n{i % 8}"


def bench_nodefile(runs: int, env: Mapping[str, str], workdir: Path) -> dict[str, Any]:
    """Benchmark 2: a 10,624-host PBS nodefile against a 2-host one (process and in-process)."""
    from ezpz.launch.resolve import plan_launch

    files = {}
    for count in (2, AURORA_HOSTS):
        path = workdir / f"nodefile-{count}"
        path.write_text("".join(f"{aurora_hostname(i)}\n" for i in range(count)))
        files[count] = path
    argv = [*ezpz_command(), "launch", "--template", "aurora", "--dry-run", "--json", "--", "python", "x.py"]
    job = {"PBS_JOBID": "8123456.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"}
    envs = {n: {**env, **job, "PBS_NODEFILE": str(p)} for n, p in files.items()}
    for count, e in envs.items():
        out = workdir / f"plan-{count}.json"
        run_once(argv, e, stdout_to=out)
        plan = json.loads(out.read_text())
        if plan["nhosts"] != count or len(plan["hosts"]) != count or plan["np"] != 12 * count:
            raise RunFailed(f"{count}-host dry run rendered nhosts={plan['nhosts']} np={plan['np']}")
    big, small = interleave(runs, (argv, envs[AURORA_HOSTS]), (argv, envs[2]))
    a, b = medians(big), medians(small)

    def in_process(e: Mapping[str, str]) -> dict[str, float]:
        walls, cpus = [], []
        for _ in range(max(5, runs)):
            wall, cpu = time.perf_counter(), time.process_time()
            plan_launch([("flags", {"template": "aurora", "command": ["python", "x.py"]})], e).to_json(indent=2)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        return {
            "wall_ms": statistics.median(walls) * 1000,
            "wall_min_ms": min(walls) * 1000,
            "cpu_ms": statistics.median(cpus) * 1000,
        }

    in_big, in_small = in_process(envs[AURORA_HOSTS]), in_process(envs[2])
    return {
        "command": " ".join(argv),
        "hosts": AURORA_HOSTS,
        "ranks": 12 * AURORA_HOSTS,
        "json_bytes": (workdir / f"plan-{AURORA_HOSTS}.json").stat().st_size,
        "big": a,
        "small": b,
        "extra_ms": (a["wall_s"] - b["wall_s"]) * 1000,
        "extra_cpu_ms": (a["cpu_s"] - b["cpu_s"]) * 1000,
        "in_process": {"big": in_big, "small": in_small, "extra_cpu_ms": in_big["cpu_ms"] - in_small["cpu_ms"]},
        "target_extra_ms": 50.0,
    }


def quiet_port() -> int:
    """A TCP port free on this host, below the kernel's ephemeral range.

    The kernel hands out ephemeral ports (``bind(0)``) to everyone, MPICH's own
    control socket included; a port below that range cannot be taken by them
    between choosing it and rank 0 binding it.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    start = 20000 + os.getpid() % 1000
    for port in range(start, low):
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise RunFailed(f"no free TCP port between {start} and {low}")


def with_port(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with a fresh MASTER_PORT when it names a MASTER_ADDR (the raw mpiexec side)."""
    return {**env, "MASTER_PORT": str(quiet_port())} if "MASTER_ADDR" in env else dict(env)


def bench_real(runs: int, env: Mapping[str, str], payload: Sequence[str], label: str, workdir: Path) -> dict[str, Any]:
    """Benchmarks 3 and 4: ``ezpz launch -n 4`` against raw ``mpiexec -n 4`` with the same payload.

    A third side runs the plan ``ezpz launch`` renders (its argv and env: the
    launcher's labels, the ``rank.sh`` shim) straight from this script, output
    to a file: what it costs over raw ``mpiexec`` is the per-rank part, and
    what ``ezpz launch`` costs over it is the ``ezpz`` process (its start, the
    resolution, the reader of every line, the run directory).
    """
    mpiexec = shutil.which("mpiexec", path=env["PATH"])
    if mpiexec is None:
        raise RunFailed("mpiexec not found: pip install mpich")
    ours = [*ezpz_command(), "launch", "-n", "4", "--run-dir", str(workdir / f"run-{label.split()[0]}"), "--", *payload]
    raw = [mpiexec, "-n", "4", *payload]
    # The same MASTER_ADDR ezpz exports here; MASTER_PORT is set per run by with_port.
    raw_env = {**env, "MASTER_ADDR": "localhost"}
    rendered = [*ezpz_command(), "launch", "-n", "4", "--dry-run", "--json", "--", *payload]
    plan = json.loads(subprocess.run(rendered, env=dict(env), capture_output=True, text=True, check=True).stdout)
    direct = [mpiexec, *plan["argv"][1:]]
    direct_env = {**env, **plan["env"]}
    failures: list[str] = []
    ezpz_s, raw_s, direct_s = interleave(
        runs, (ours, env), (raw, raw_env), (direct, direct_env), fresh_env=with_port, failures=failures
    )
    a, b, c = medians(ezpz_s), medians(raw_s), medians(direct_s)
    return {
        "payload": label,
        "failures_retried": failures,
        "command": " ".join(ours),
        "baseline": " ".join(raw) + "  (MASTER_ADDR/MASTER_PORT exported)",
        "direct_command": " ".join(direct) + "  (the plan's env; no ezpz process)",
        "ezpz": a,
        "mpiexec": b,
        "direct": c,
        "wall_ratio": a["wall_s"] / b["wall_s"],
        "extra_ms": (a["wall_s"] - b["wall_s"]) * 1000,
        "extra_cpu_ms": (a["cpu_s"] - b["cpu_s"]) * 1000,
        "per_rank_ms": (c["wall_s"] - b["wall_s"]) * 1000,
        "per_rank_cpu_ms": (c["cpu_s"] - b["cpu_s"]) * 1000,
        "ezpz_process_ms": (a["wall_s"] - c["wall_s"]) * 1000,
        "ezpz_process_cpu_ms": (a["cpu_s"] - c["cpu_s"]) * 1000,
    }


#: Benchmark 5's payload: ``python -c FLOOD N`` prints N lines of 60 bytes.
FLOOD = "import sys\nn = int(sys.argv[1])\nw = sys.stdout.write\nfor i in range(n):\n    w(f'line {i:>12} ' + 'x' * 42 + '\\n')\n"


def bench_output(runs: int, env: Mapping[str, str], lines: int, workdir: Path) -> dict[str, Any]:
    """Benchmark 5: lines per second through ``ezpz launch`` against raw ``mpiexec`` into a file."""
    mpiexec = shutil.which("mpiexec", path=env["PATH"])
    if mpiexec is None:
        raise RunFailed("mpiexec not found: pip install mpich")
    payload = [sys.executable, "-c", FLOOD, str(lines)]
    ours = [*ezpz_command(), "launch", "-n", "2", "--run-dir", str(workdir / "run"), "--", *payload]
    raw = [mpiexec, "-n", "2", *payload]
    got: list[list[Sample]] = [[], []]
    for i in range(runs + 1):
        for side, argv in enumerate((ours, raw)):
            out = workdir / f"out-{side}.txt"
            sample = run_once(argv, env, stdout_to=out)
            count = out.read_bytes().count(b"\n")
            if count != 2 * lines:
                raise RunFailed(f"{' '.join(argv[:3])} wrote {count} lines, expected {2 * lines}")
            if i:
                got[side].append(sample)
    a, b = medians(got[0]), medians(got[1])
    return {
        "lines": 2 * lines,
        "command": " ".join(ours[:6]) + " … -- python flood.py",
        "baseline": " ".join(raw[:3]) + " python flood.py > file",
        "ezpz": a,
        "mpiexec": b,
        "ezpz_lines_per_s": 2 * lines / a["wall_s"],
        "mpiexec_lines_per_s": 2 * lines / b["wall_s"],
        "extra_cpu_s": a["cpu_s"] - b["cpu_s"],
    }


def machine() -> dict[str, Any]:
    """Facts that make the figures comparable: cores, load, versions."""
    from ezpz import __version__

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "ezpz": __version__,
        "executable": sys.executable,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def verdict(name: str, value: float, limit: float) -> str:
    """``name ok`` when ``value <= limit``, else ``name MISS``."""
    return f"{name} {'ok' if value <= limit else 'MISS'}"


def _split_row(name: str, real: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """The row that splits a real launch's extra time: per-rank part (the plan run directly) and the ezpz process."""
    return (
        name,
        f"{real['direct']['wall_s'] * 1000:.0f} ms",
        "",
        f"per rank {real['per_rank_ms']:+.0f} ms, ezpz process {real['ezpz_process_ms']:+.0f} ms",
        f"cpu {real['per_rank_cpu_ms']:+.0f} / {real['ezpz_process_cpu_ms']:+.0f} ms",
    )


def table(results: dict[str, Any]) -> str:
    """Format the results as a plain-text table: medians of wall time (and CPU time beside it)."""
    d, n = results["dry_run"], results["nodefile"]
    t, z = results["torch_4_ranks"], results["trivial_4_ranks"]
    cli, api = results["imports"]["cli"], results["imports"]["api"]
    heavy = cli["heavy"] + api["heavy"]
    rows = [
        ("measure", "ezpz", "baseline", "result", "target"),
        (
            "dry run vs python -c pass, wall",
            f"{d['ezpz']['wall_s'] * 1000:.0f} ms",
            f"{d['python_c_pass']['wall_s'] * 1000:.0f} ms",
            f"{d['wall_ratio']:.1f}x",
            verdict("<= 10x", d["wall_ratio"], 10),
        ),
        (
            "dry run vs python -c pass, cpu",
            f"{d['ezpz']['cpu_s'] * 1000:.0f} ms",
            f"{d['python_c_pass']['cpu_s'] * 1000:.0f} ms",
            f"{d['cpu_ratio']:.1f}x",
            verdict("<= 10x", d["cpu_ratio"], 10),
        ),
        (
            "  python -S -c pass (no .pth files)",
            "",
            f"{d['python_S_c_pass']['wall_s'] * 1000:.0f} ms",
            f"cpu {d['python_S_c_pass']['cpu_s'] * 1000:.0f} ms",
            "",
        ),
        (
            "dry run, peak rss",
            f"{d['ezpz']['rss_mb']:.0f} MB",
            f"{d['python_c_pass']['rss_mb']:.0f} MB",
            f"{d['rss_ratio']:.1f}x",
            f"(reference {REFERENCE['peak_rss_mb']:.0f} MB)",
        ),
        (
            "dry run imports torch/mpi4py/wandb",
            "cli: " + (",".join(cli["heavy"]) or "none"),
            "api: " + (",".join(api["heavy"]) or "none"),
            f"{cli['modules']} modules imported",
            "none " + ("MISS" if heavy else "ok"),
        ),
        (
            f"--json, {n['hosts']:,} vs 2 hosts, wall",
            f"{n['big']['wall_s'] * 1000:.0f} ms",
            f"{n['small']['wall_s'] * 1000:.0f} ms",
            f"+{n['extra_ms']:.0f} ms",
            verdict("<= +50 ms", n["extra_ms"], 50),
        ),
        (
            f"--json, {n['hosts']:,} vs 2 hosts, cpu",
            f"{n['big']['cpu_s'] * 1000:.0f} ms",
            f"{n['small']['cpu_s'] * 1000:.0f} ms",
            f"+{n['extra_cpu_ms']:.0f} ms",
            verdict("<= +50 ms", n["extra_cpu_ms"], 50),
        ),
        (
            "  in-process render + to_json, cpu",
            f"{n['in_process']['big']['cpu_ms']:.1f} ms",
            f"{n['in_process']['small']['cpu_ms']:.1f} ms",
            f"+{n['in_process']['extra_cpu_ms']:.1f} ms",
            "",
        ),
        (
            "4 ranks, torch gloo all_reduce, wall",
            f"{t['ezpz']['wall_s']:.2f} s",
            f"{t['mpiexec']['wall_s']:.2f} s",
            f"{t['wall_ratio']:.3f}x (+{t['extra_ms']:.0f} ms)",
            verdict("<= 1.10x", t["wall_ratio"], 1.10),
        ),
        (
            "4 ranks, torch gloo all_reduce, cpu",
            f"{t['ezpz']['cpu_s']:.2f} s",
            f"{t['mpiexec']['cpu_s']:.2f} s",
            f"+{t['extra_cpu_ms']:.0f} ms",
            "",
        ),
        _split_row("  of which the plan without ezpz, wall", t),
        (
            "4 ranks, python -c pass (fixed cost)",
            f"{z['ezpz']['wall_s'] * 1000:.0f} ms",
            f"{z['mpiexec']['wall_s'] * 1000:.0f} ms",
            f"+{z['extra_ms']:.0f} ms wall, +{z['extra_cpu_ms']:.0f} ms cpu",
            "",
        ),
        _split_row("  of which the plan without ezpz, wall", z),
        (
            f"output, 2 ranks x {results['output']['lines'] // 2:,} lines",
            f"{results['output']['ezpz_lines_per_s'] / 1000:.0f} k lines/s",
            f"{results['output']['mpiexec_lines_per_s'] / 1000:.0f} k lines/s",
            f"cpu +{results['output']['extra_cpu_s']:.2f} s (labels, console, logs)",
            "",
        ),
        (
            "reference ezpz 0.26.1 launch (quoted)",
            f"{REFERENCE['wall_s']} s, {REFERENCE['peak_rss_mb']:.0f} MB",
            f"{REFERENCE['python_c_pass_s']} s",
            "from notes/sites.md",
            "not measured",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = results["machine"]
    load = max(m["loadavg"][0], m["loadavg_end"][0])
    lines += [
        "",
        f"medians of interleaved runs; {m['cpus']} cpus, load {m['loadavg'][0]:.1f} -> {m['loadavg_end'][0]:.1f},"
        f" python {m['python']}, ezpz {m['ezpz']}",
    ]
    if load > (m["cpus"] or 1):
        lines.append("warning: other processes kept this machine busy; wall times are inflated, read the cpu rows")
    return "\n".join(lines)


def _dry_run_modules(env: Mapping[str, str]) -> dict[str, int]:
    """Modules in ``sys.modules`` after an in-process dry run: all, and ezpz's own."""
    code = (
        "import contextlib, io, sys\n"
        "from ezpz.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['launch', '--dry-run', '--', 'python', 'x.py'])\n"
        "print(len(sys.modules), sum(m.split('.')[0] == 'ezpz' for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=dict(env), capture_output=True, text=True, check=True)
    total, ours = done.stdout.split()
    return {"modules": int(total), "ezpz_modules": int(ours), "other_modules": int(total) - int(ours)}


def bench_against(runs: int, env: Mapping[str, str], tree: Path) -> dict[str, Any]:
    """The dry run of this checkout against the one at ``tree`` (``PYTHONPATH``), interleaved.

    For a change that must not slow the launch path (a refactor): both sides
    run in the same session under the same load, and each side's modules are
    counted after an in-process dry run.
    """
    dry = [sys.executable, "-m", "ezpz", "launch", "--dry-run", "--", "python", "x.py"]
    here = str(Path(__file__).resolve().parents[1])
    sides = {"baseline": {**env, "PYTHONPATH": str(tree)}, "this": {**env, "PYTHONPATH": here}}
    out: dict[str, Any] = {"baseline_tree": str(tree)}
    # `python -m` puts the working directory first on sys.path: from a checkout
    # both sides would import that checkout, whatever PYTHONPATH says.
    cwd = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        samples = interleave(runs, (dry, sides["baseline"]), (dry, sides["this"]))
        for (name, side_env), got in zip(sides.items(), samples, strict=True):
            out[name] = {**medians(got), **_dry_run_modules(side_env), "heavy": heavy_imports_api(side_env)["heavy"]}
    finally:
        os.chdir(cwd)
    out["wall_ratio"] = out["this"]["wall_s"] / out["baseline"]["wall_s"]
    out["cpu_ratio"] = out["this"]["cpu_s"] / out["baseline"]["cpu_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print the table, write the JSON; 1 if a run or import check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="measured runs per side of the fast benchmarks")
    # torch's rendezvous adds 0-0.9 s at random to a run (a retry backoff), on every side alike: 4 runs were too few.
    parser.add_argument("--torch-runs", type=int, default=12, help="measured runs per side of the torch launch")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="only the dry run, of this checkout against the source tree TREE (e.g. a git worktree of main)",
    )
    parser.add_argument("--lines", type=int, default=200_000, help="lines per rank of the output benchmark")
    args = parser.parse_args(argv)
    env = base_env()
    if args.against is not None:
        ab = bench_against(args.runs, env, args.against)
        ab["machine"] = {**machine(), "loadavg_end": os.getloadavg()}
        sys.stdout.write(json.dumps(ab, indent=2) + "\n")
        return 1 if ab["this"]["heavy"] else 0
    results: dict[str, Any] = {"machine": machine(), "reference": REFERENCE}
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ezpz-bench-") as tmp:
            work = Path(tmp)
            payload = work / "payload.py"
            payload.write_text(PAYLOAD)
            log.info("imports on the dry-run path")
            results["imports"] = {"cli": heavy_imports_cli(env), "api": heavy_imports_api(env)}
            log.info("dry run vs python -c pass (%d runs each)", args.runs)
            results["dry_run"] = bench_dry_run(args.runs, env)
            log.info("%d-host vs 2-host nodefile (%d runs each)", AURORA_HOSTS, args.runs)
            results["nodefile"] = bench_nodefile(args.runs, env, work)
            log.info("4 ranks, python -c pass (%d runs each)", args.runs)
            results["trivial_4_ranks"] = bench_real(
                args.runs, env, [sys.executable, "-c", "pass"], "python -c pass", work
            )
            log.info("4 ranks, torch gloo all_reduce (%d runs each)", args.torch_runs)
            results["torch_4_ranks"] = bench_real(
                args.torch_runs, env, [sys.executable, str(payload)], "torch gloo all_reduce", work
            )
            log.info("output path, 2 ranks x %d lines (%d runs each)", args.lines, max(args.torch_runs, 2))
            results["output"] = bench_output(max(args.torch_runs, 2), env, args.lines, work)
    except (RunFailed, subprocess.CalledProcessError) as exc:
        log.error("benchmark run failed: %s", exc)
        return 1
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["seconds"] = time.perf_counter() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(table(results) + f"\n\ntook {results['seconds']:.0f} s; results in {args.output}\n")
    imports = results["imports"]
    return 1 if imports["cli"]["heavy"] or imports["api"]["heavy"] else 0


if __name__ == "__main__":
    sys.exit(main())
