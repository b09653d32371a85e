"""``ezpz doctor``: check a launch's prerequisites before it burns queue time.

Checks are data (:mod:`ezpz.model.checks`): a ``Check`` has a name and a
function from a ``DoctorContext`` to a ``CheckResult`` (``ok``, ``warning`` or
``error``, a one-line message and a remedy).  Plugins add checks through the
``ezpz_doctor_checks`` hook.  The MPI checks are in :mod:`ezpz.doctor.mpi`;
running them and showing the results in :mod:`ezpz.doctor.report`.

Built-in checks: the MPI launcher on PATH, mpi4py and whether the MPI library
it loads matches that launcher (with a 2-rank probe when ``deep``), the
scheduler and its allocation, torch devices, W&B, plugins, and, when launch
layers are given, whether the spec fits this allocation.

Nothing here imports torch, mpi4py or wandb at module import time: torch is
imported inside the device check only.
"""

from __future__ import annotations

import netrc
from collections.abc import Mapping
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ezpz.doctor.mpi import check_mpi4py, check_mpi_launcher
from ezpz.errors import EzpzError, plural
from ezpz.extras import require
from ezpz.launch.machine import Machine
from ezpz.launch.resolve import resolve
from ezpz.model.checks import Check, CheckResult, DoctorContext
from ezpz.plugins.manager import doctor_checks, plugin_report, scheduler_registry, schedulers
from ezpz.plugins.registry import pick
from ezpz.runtime.dist import DEFAULT_BACKENDS, detect_device_type

__all__ = [
    "BUILTIN_CHECKS",
    "all_checks",
    "check_devices",
    "check_plugins",
    "check_rendezvous",
    "check_scheduler",
    "check_spec",
    "check_wandb",
    "mask",
]


# --------------------------------------------------------------- scheduler


def check_scheduler(ctx: DoctorContext) -> CheckResult:
    """Report which scheduler adapter is active, why, and what it allocated."""
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
    hosts = ", ".join(alloc.hosts[:4]) + (f", ... ({plural(len(alloc.hosts), 'host')})" if len(alloc.hosts) > 4 else "")
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
    message = f"torch {torch.__version__}: {kind}, backend {backend}, {plural(count, 'accelerator')}"
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


#: Variables that never ask for W&B by being set (they switch it off).
_WANDB_OFF = ("WANDB_MODE", "WANDB_DISABLED")


def wandb_asked_by(environ: Mapping[str, str]) -> str | None:
    """The variable that would make this run use W&B (``EZPZ_WANDB=1``, any ``WANDB_*``), or ``None``.

    ezpz's History logs to W&B only when asked (``EZPZ_WANDB`` or an active
    run); a ``WANDB_*`` variable says the user's own code will.
    """
    if environ.get("EZPZ_WANDB", "").strip().lower() in ("1", "true", "yes", "on"):
        return "EZPZ_WANDB"
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("online", "offline", "dryrun"):
        return "WANDB_MODE"
    return next((v for v in sorted(environ) if v.startswith("WANDB_") and v not in _WANDB_OFF and environ[v]), None)


def check_wandb(ctx: DoctorContext) -> CheckResult:
    """Report whether W&B would be used here; if so, that it is installed and has credentials (masked)."""
    name = "wandb"
    env = ctx.environ
    disabled = env.get("WANDB_MODE", "").strip().lower() == "disabled" or env.get(
        "WANDB_DISABLED", ""
    ).strip().lower() in ("1", "true", "yes")
    asked = None if disabled else wandb_asked_by(env)
    try:
        installed: str | None = version("wandb")
    except PackageNotFoundError:
        installed = None
    key = _wandb_key(env) if installed else None
    if asked is None:
        why = (
            "disabled by WANDB_MODE / WANDB_DISABLED" if disabled else "neither EZPZ_WANDB nor a WANDB_* variable asks"
        )
        have = f"wandb {installed} installed" if installed else "wandb not installed"
        if key:
            have += f", key {mask(key[0])} from {key[1]}"
        return CheckResult(name, "ok", f"not in use ({why}); {have}", "", {"version": installed, "in_use": False})
    if installed is None:
        return CheckResult(
            name, "warning", f"{asked} asks for W&B but wandb is not installed", "pip install 'ezpz[wandb]'"
        )
    mode = env.get("WANDB_MODE", "").strip().lower() or "online"
    details = {
        "version": installed,
        "in_use": True,
        "asked_by": asked,
        "mode": mode,
        "credentials": f"{mask(key[0])} ({key[1]})" if key else None,
    }
    message = f"wandb {installed}, mode {mode} (asked by {asked})"
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
    """List every loaded plugin with version and hooks, any that failed to load, and refused adapters."""
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
    for refused in scheduler_registry().refused:
        results.append(
            CheckResult(
                "plugin scheduler",
                "warning",
                f"{refused} was refused: a built-in scheduler has its name",
                "give the plugin's scheduler class another name attribute",
                {"refused": refused},
            )
        )
    return results


# -------------------------------------------------------------------- spec


def check_spec(ctx: DoctorContext) -> CheckResult:
    """Check that the spec given by --template/--config/flags fits this allocation.

    Also compares the accelerators per node the spec (usually its template)
    expects with what this node shows (``nvidia-smi -L``, ``/dev/dri``, ...).
    """
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
    message = f"fits: {plural(plan.np, 'rank')}, {plan.ppn} per host on {plural(plan.nhosts, 'host')}, {plan.launcher}"
    if expected is not None:
        shown, how = machine.probe()
        details.update(accelerators_expected=expected, accelerators_shown=shown)
        if shown != expected:
            return CheckResult(
                name,
                "warning",
                f"{message}; the spec expects {plural(expected, 'accelerator')} per node, this node shows {shown} ({how})",
                "run doctor on a compute node, or set accelerators_per_node to match",
                details,
            )
        message += f"; {plural(shown, 'accelerator')} per node, as expected"
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
    return [*BUILTIN_CHECKS, *doctor_checks()]
