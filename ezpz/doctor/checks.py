"""``ezpz doctor``: check a launch's prerequisites before it burns queue time.

Checks are data: a :class:`Check` has a name and a function from a
:class:`DoctorContext` to a :class:`CheckResult` (``ok``, ``warning`` or
``error``, a one-line message and a remedy).  Plugins add checks through the
``ezpz_doctor_checks`` hook by returning :class:`Check` objects.

Built-in checks: the MPI launcher on PATH, mpi4py and whether the MPI library
it loads matches that launcher (with a 2-rank probe when ``deep``), the
scheduler and its allocation, torch devices, W&B, plugins, and, when launch
layers are given, whether the spec fits this allocation.

Nothing here imports torch, mpi4py or wandb at module import time: mpi4py is
probed in a child process (initialising MPI outside ``mpiexec`` aborts under
some MPIs), torch is imported inside the device check only.
"""

from __future__ import annotations

import importlib.util
import json
import netrc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ezpz.errors import EzpzError, LaunchError
from ezpz.runtime.dist import DEFAULT_BACKENDS, detect_device_type
from ezpz.schedulers.dialects import DIALECTS, install_hint

__all__ = [
    "BUILTIN_CHECKS",
    "Check",
    "CheckResult",
    "DoctorContext",
    "MpiFlavor",
    "Status",
    "all_checks",
    "exit_code",
    "mask",
    "mpi_flavor",
    "render_table",
    "results_json",
    "run_checks",
]

Status = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's name (``mpi``, ``scheduler``, ...).
        status: ``ok``, ``warning`` or ``error``.
        message: one line saying what was found.
        remedy: one line saying what to do; empty when nothing is needed.
        details: machine-readable facts for ``--json``.

    """

    name: str
    status: Status
    message: str
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorContext:
    """What every check may look at.

    Attributes:
        environ: environment variables of the machine under test (PATH included).
        deep: run slower, more thorough probes (a 2-rank MPI job).
        layers: launch layers (template, config, flags) whose fit to this
            allocation is checked; empty when none were given.
        python_bin: where ``ezpz launch`` also looks for a launcher missing
            from PATH (the directory of this interpreter, where ``pip install
            mpich`` puts ``mpiexec``); ``None`` to look on PATH only.
    """

    environ: Mapping[str, str]
    deep: bool = False
    layers: Sequence[tuple[str, Mapping[str, Any]]] = ()
    python_bin: str | None = os.path.dirname(sys.executable)


@dataclass(frozen=True)
class Check:
    """A named diagnostic; plugins return these from ``ezpz_doctor_checks``.

    Attributes:
        name: short name shown in the table.
        run: ``run(ctx)`` returns one :class:`CheckResult` or a list of them.

    """

    name: str
    run: Callable[[DoctorContext], CheckResult | list[CheckResult]]


def _capture(argv: Sequence[str], environ: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    from ezpz.launch.execute import run_command

    return run_command(argv, env=environ, timeout=timeout)


# --------------------------------------------------------------------- MPI


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


def _wanted_launchers(ctx: DoctorContext) -> tuple[str, tuple[str, ...]]:
    """Return the active adapter's name and the launcher binaries it may use."""
    from ezpz.plugins.manager import schedulers
    from ezpz.plugins.registry import pick

    try:
        adapter = pick(schedulers(), ctx.environ, None)[0]
    except EzpzError:
        return "unknown", ("mpiexec", "mpirun", "srun")
    known = DIALECTS.get(adapter.default_launcher)
    binary = known.binary if known else None
    return adapter.name, (binary,) if binary else ("mpiexec", "mpirun", "srun")


def _launcher(ctx: DoctorContext) -> tuple[str, str] | None:
    """Find the launcher ``ezpz launch`` would use: on PATH, else beside python."""
    dirs = [ctx.environ.get("PATH", ""), *([ctx.python_bin] if ctx.python_bin else [])]
    for name in _wanted_launchers(ctx)[1]:
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
    """Find the launcher the active adapter uses and report its implementation and version."""
    found = _launcher(ctx)
    if found is None:
        adapter, names = _wanted_launchers(ctx)
        return CheckResult(
            "mpi launcher",
            "error",
            f"{' or '.join(names)} not found on PATH (the {adapter} adapter launches with it)",
            install_hint(names[0]),
        )
    name, path = found
    flavor, first = _launcher_flavor(path, ctx.environ)
    details = {"launcher": name, "path": path, "flavor": asdict(flavor) if flavor else None}
    if flavor is None:
        return CheckResult(
            "mpi launcher",
            "warning",
            f"{path}: unrecognised --version output ({first!r})",
            "check it is an MPI launcher (MPICH, Open MPI, PALS, Intel MPI, srun)",
            details,
        )
    return CheckResult("mpi launcher", "ok", f"{path}: {flavor}", "", details)


_PROBE_LIBRARY = "import mpi4py\nmpi4py.rc.initialize = False\nfrom mpi4py import MPI\nprint(MPI.Get_library_version())"
_PROBE_RANKS = "from mpi4py import MPI\nc = MPI.COMM_WORLD\nprint('EZPZ-RANK', c.Get_rank(), c.Get_size())"


def _mpi4py_library(ctx: DoctorContext) -> tuple[MpiFlavor | None, str]:
    proc = _capture([sys.executable, "-c", _PROBE_LIBRARY], ctx.environ, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    return mpi_flavor(proc.stdout), proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""


def _deep_probe(launcher: str, ctx: DoctorContext) -> tuple[bool, str]:
    """Run 2 ranks that print (rank, size); True when they see one world of 2."""
    argv = [launcher, "-n", "2", sys.executable, "-c", _PROBE_RANKS]
    try:
        proc = _capture(argv, ctx.environ, timeout=120)
    except LaunchError as exc:
        return False, f"2-rank probe failed: {exc.line()}"
    seen = sorted(tuple(line.split()[1:3]) for line in proc.stdout.splitlines() if line.startswith("EZPZ-RANK"))
    if seen == [("0", "2"), ("1", "2")]:
        return True, "2-rank probe: ranks 0 and 1 of 2"
    if seen and all(size == "1" for _, size in seen):
        return False, f"2-rank probe: every rank is rank 0 of 1 ({len(seen)} singletons)"
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"2-rank probe failed (exit {proc.returncode}): {tail}"


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


# --------------------------------------------------------------- scheduler


def check_scheduler(ctx: DoctorContext) -> CheckResult:
    """Report which scheduler adapter is active, why, and what it allocated."""
    from ezpz.plugins.manager import schedulers
    from ezpz.plugins.registry import pick

    name = "scheduler"
    adapters = schedulers()
    try:
        adapter, why = pick(adapters, ctx.environ, None)
        alloc = adapter.allocation(ctx.environ)
    except EzpzError as exc:
        return CheckResult(name, "error", exc.line(), "fix the job's variables or pass --scheduler NAME")
    details = {
        "adapter": adapter.name,
        "why": why,
        "job_id": alloc.job_id,
        "hosts": list(alloc.hosts),
        "slots": list(alloc.slots) if alloc.slots else None,
        "source": alloc.source,
    }
    hosts = ", ".join(alloc.hosts[:4]) + (f", ... ({len(alloc.hosts)} hosts)" if len(alloc.hosts) > 4 else "")
    message = f"{adapter.name} ({why})" + (f", job {alloc.job_id}" if alloc.job_id else "") + f": {hosts}"
    if alloc.slots:
        message += f"; slots {'/'.join(map(str, alloc.slots[:4]))}"
    if not alloc.hosts:
        return CheckResult(
            name,
            "error",
            f"{adapter.name}: the allocation lists no hosts",
            "check the job's hostfile / node list",
            details,
        )
    stale = [v for v in ("PBS_JOBID", "SLURM_JOB_ID") if ctx.environ.get(v) and adapter.name not in v.lower()]
    if adapter.name in ("pbs", "slurm") and stale:
        return CheckResult(
            name,
            "warning",
            message + f"; also set: {', '.join(stale)}",
            f"unset {', '.join(stale)} (left over from another job?)",
            details,
        )
    return CheckResult(name, "ok", message, "", details)


# ----------------------------------------------------------------- devices


def check_devices(ctx: DoctorContext) -> CheckResult:
    """Report whether torch imports, and the device type, backend and count it sees."""
    from ezpz.extras import require

    name = "devices"
    try:
        torch = require("torch", "torch")
    except EzpzError as exc:
        return CheckResult(name, "warning", exc.what, exc.hint or "")
    # What torch itself sees: TORCH_DEVICE is not consulted here.
    kind = detect_device_type({}, torch)
    backend = DEFAULT_BACKENDS[kind]
    count = {"cuda": torch.cuda.device_count, "xpu": lambda: torch.xpu.device_count(), "mps": lambda: 1}.get(
        kind, lambda: 0
    )()
    details = {"torch": torch.__version__, "device": kind, "backend": backend, "count": count}
    message = f"torch {torch.__version__}: {kind}, backend {backend}, {count} accelerator(s)"
    visible = [
        v
        for v in ("CUDA_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "ROCR_VISIBLE_DEVICES")
        if ctx.environ.get(v, "").strip() not in ("", "-1")
    ]
    if kind == "cpu" and visible:
        return CheckResult(
            name,
            "warning",
            message + f" although {visible[0]}={ctx.environ[visible[0]]}",
            "install the torch build for this accelerator (CUDA/ROCm/XPU)",
            details,
        )
    return CheckResult(name, "ok", message, "", details)


# -------------------------------------------------------------------- W&B


def mask(secret: str) -> str:
    """Hide all but the last 4 characters of ``secret``."""
    return "*" * max(len(secret) - 4, 4) + secret[-4:] if len(secret) > 4 else "****"


def _wandb_key(environ: Mapping[str, str]) -> tuple[str, str] | None:
    key = environ.get("WANDB_API_KEY", "").strip()
    if key:
        return key, "WANDB_API_KEY"
    home = environ.get("HOME", "")
    path = Path(environ.get("NETRC") or (Path(home) / ".netrc" if home else ""))
    if not str(path) or not path.is_file():
        return None
    try:
        auth = netrc.netrc(str(path)).authenticators(
            environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        )
    except (netrc.NetrcParseError, OSError):
        return None
    return (auth[2], str(path)) if auth and auth[2] else None


#: Variables that describe one launch and go stale in the next.
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def check_rendezvous(ctx: DoctorContext) -> CheckResult:
    """Warn about torch rendezvous variables left over from an earlier launch."""
    name = "rendezvous"
    stale = {var: ctx.environ[var] for var in RENDEZVOUS_VARS if ctx.environ.get(var)}
    launched = ctx.environ.get("EZPZ_LAUNCH_ID") or ctx.environ.get("TORCHELASTIC_RUN_ID")
    if not stale:
        return CheckResult(name, "ok", "no MASTER_*/RANK/WORLD_SIZE left in the environment", "")
    if launched:
        return CheckResult(name, "ok", f"set by the launcher that started this process ({launched})", "", stale)
    shown = " ".join(f"{k}={v}" for k, v in stale.items())
    return CheckResult(
        name,
        "warning",
        f"left over from an earlier job: {shown}",
        "unset them (ezpz launch sets fresh ones for every rank; plain scripts may try to meet there and hang)",
        stale,
    )


def check_wandb(ctx: DoctorContext) -> CheckResult:
    """Report whether wandb is installed, its mode, and credentials (masked)."""
    from importlib.metadata import PackageNotFoundError, version

    name = "wandb"
    mode = ctx.environ.get("WANDB_MODE", "").strip().lower()
    if ctx.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
        mode = "disabled"
    try:
        installed = version("wandb")
    except PackageNotFoundError:
        if mode in ("online", "offline"):
            return CheckResult(
                name,
                "warning",
                f"WANDB_MODE={mode} but wandb is not installed",
                "pip install 'ezpz[wandb]'",
            )
        return CheckResult(
            name,
            "ok",
            "wandb not installed; metrics stay local",
            "pip install 'ezpz[wandb]' to track runs",
        )
    mode = mode or "online"
    key = _wandb_key(ctx.environ)
    details = {
        "version": installed,
        "mode": mode,
        "credentials": f"{mask(key[0])} ({key[1]})" if key else None,
    }
    message = f"wandb {installed}, mode {mode}"
    if key:
        return CheckResult(name, "ok", f"{message}, key {mask(key[0])} from {key[1]}", "", details)
    if mode == "online":
        return CheckResult(
            name,
            "warning",
            f"{message}, no credentials",
            "wandb login, set WANDB_API_KEY, or WANDB_MODE=offline",
            details,
        )
    return CheckResult(name, "ok", f"{message}, no credentials (not needed)", "", details)


# ----------------------------------------------------------------- plugins


def check_plugins(ctx: DoctorContext) -> list[CheckResult]:
    """List every loaded plugin with version and hooks, and any that failed to load."""
    from ezpz.plugins.manager import plugin_report

    results = []
    for info in plugin_report():
        details = asdict(info)
        label = f"plugin {info.name.removeprefix('ezpz.schedulers.')}"
        if info.error:
            results.append(
                CheckResult(
                    label,
                    "error",
                    f"failed to load: {info.error}",
                    f"fix or uninstall the package providing {info.source}",
                    details,
                )
            )
        else:
            hooks = ", ".join(h.removeprefix("ezpz_") for h in info.hooks) or "no hooks"
            where = "built-in" if info.source == "builtin" else info.version or "unknown version"
            results.append(CheckResult(label, "ok", f"{where}: {hooks}", "", details))
    return results


# -------------------------------------------------------------------- spec


def check_spec(ctx: DoctorContext) -> CheckResult:
    """Check that the spec given by --template/--config/flags fits this allocation.

    Also compares the accelerators per node the spec (usually its template)
    expects with what this node shows (``nvidia-smi -L``, ``/dev/dri``, ...).
    """
    from ezpz.launch.machine import Machine
    from ezpz.launch.resolve import resolve

    name = "spec"
    if not ctx.layers:
        return CheckResult(name, "ok", "no --template/--config given; nothing to fit")
    layers = [*ctx.layers, ("doctor", {"command": ["true"]})]
    try:
        machine = Machine.here()
        resolved = resolve(layers, ctx.environ, machine)
        plan = resolved.adapter.render(resolved.spec, resolved.allocation)
        expected = resolved.spec.accelerators_per_node
    except EzpzError as exc:
        return CheckResult(name, "error", exc.line(), "change the counts or the template to fit the job")
    details = {"np": plan.np, "ppn": plan.ppn, "nhosts": plan.nhosts, "launcher": plan.launcher}
    message = f"fits: {plan.np} ranks, {plan.ppn} per host on {plan.nhosts} host(s), {plan.launcher}"
    if expected is not None:
        shown, how = machine.probe()
        details.update(accelerators_expected=expected, accelerators_shown=shown)
        if shown != expected:
            return CheckResult(
                name,
                "warning",
                f"{message}; the spec expects {expected} accelerators per node, this node shows {shown} ({how})",
                "run doctor on a compute node, or set accelerators_per_node to match",
                details,
            )
        message += f"; {shown} accelerators per node, as expected"
    return CheckResult(name, "ok", message, "", details)


BUILTIN_CHECKS: tuple[Check, ...] = (
    Check("mpi launcher", check_mpi_launcher),
    Check("mpi4py", check_mpi4py),
    Check("scheduler", check_scheduler),
    Check("devices", check_devices),
    Check("rendezvous", check_rendezvous),
    Check("wandb", check_wandb),
    Check("plugins", check_plugins),
    Check("spec", check_spec),
)


def all_checks() -> list[Check]:
    """Return the built-in checks followed by those plugins contribute."""
    from ezpz.plugins.manager import doctor_checks

    return [*BUILTIN_CHECKS, *doctor_checks()]


def run_checks(ctx: DoctorContext, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """Run ``checks`` (default :func:`all_checks`); a check that crashes becomes an error result."""
    results: list[CheckResult] = []
    for check in all_checks() if checks is None else checks:
        try:
            out = check.run(ctx)
        except Exception as exc:  # one broken check (often a plugin's) must not hide the others
            out = CheckResult(
                check.name,
                "error",
                f"check crashed: {type(exc).__name__}: {exc}",
                "report this to the check's author",
            )
        results.extend(out if isinstance(out, list) else [out])
    return results


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when no result is an error, 1 otherwise."""
    return 1 if any(r.status == "error" for r in results) else 0


def results_json(results: Sequence[CheckResult]) -> str:
    """Return the results as JSON: ``{"ok": bool, "checks": [...]}``."""
    return json.dumps(
        {"ok": exit_code(results) == 0, "checks": [asdict(r) for r in results]},
        indent=2,
        default=str,
    )


def render_table(results: Sequence[CheckResult]) -> Any:
    """Return a rich table of the results, for people."""
    from rich.table import Table
    from rich.text import Text

    style = {"ok": "green", "warning": "yellow", "error": "bold red"}
    table = Table(title="ezpz doctor", show_lines=False)
    for column in ("check", "status", "found", "remedy"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, Text(r.status, style=style[r.status]), r.message, r.remedy)
    return table
