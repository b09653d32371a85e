"""``ezpz submit``: a batch script (PBS, Slurm, or a plugin scheduler's) from the same spec as ``ezpz launch``.

The script is rendered from three things:

* the **request**: nodes, walltime, queue, account, filesystems, job name
  (:class:`~ezpz.model.batch.SubmitRequest`);
* the template's ``[submit]`` table: the site's queues and their limits,
  whether an account is required, default filesystems, the environment
  set-up lines (:class:`~ezpz.model.batch.SubmitSettings`);
* the **launch line**: ``ezpz launch [the same launch options] -- CMD``,
  which runs inside the job and resolves the allocation there.

:func:`render_script` is pure (same inputs, same text);
:func:`check_request` raises a one-line :class:`~ezpz.errors.SpecError` for
bad input before anything is written.  :func:`plan_submit` resolves the spec
with :func:`ezpz.launch.resolve.choose`, the resolver ``ezpz launch`` uses
(it may look for ``qsub`` / ``sbatch`` on ``PATH`` to tell the batch system);
:func:`submit_script` hands the script to the scheduler's submit command.
The scheduler's own lines (``#PBS``, ``#SBATCH``) come from its adapter's
:meth:`~ezpz.schedulers.base.Scheduler.batch_header`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence

from ezpz.errors import LaunchError, SchedulerError, SpecError, closest, plural
from ezpz.launch.execute import STOPPED_EXIT, run_command
from ezpz.launch.resolve import choose
from ezpz.model.batch import (
    BatchScript,
    SubmitRequest,
    SubmitSettings,
    format_walltime,
    parse_walltime,
    submit_settings,
)
from ezpz.model.spec import LaunchSpec, Layer
from ezpz.plugins.manager import schedulers
from ezpz.plugins.registry import pick
from ezpz.schedulers.base import Scheduler

__all__ = [
    "DEFAULT_MAX_REQUEUES",
    "DEFAULT_WARNING",
    "WARNING_SIGNALS",
    "check_request",
    "parse_signal",
    "plan_submit",
    "render_script",
    "submit_script",
]

_WORD = re.compile(r"^[^\s'\"\\]+$")
# What qsub and sbatch --parsable print on success: "8123456.aurora-pbs-0001..." / "123" / "123;cluster".
_JOB_ID = re.compile(r"^(\d+(?:\.[\w.-]+)?)(?:;\S+)?$")
# --signal in Slurm's spelling: [B:]SIG@SECONDS (SIG with or without "SIG").
_SIGNAL = re.compile(r"^(?:B:)?(?:SIG)?([A-Z][A-Z0-9]*)@(\d+)$")

#: Signals --signal may ask for: catchable, and not SIGUSR1 (NCCL's).
WARNING_SIGNALS = ("USR2", "TERM", "INT", "HUP", "URG", "XCPU", "ALRM")
#: The warning and the requeue limit when --requeue comes without --signal / --max-requeues.
DEFAULT_WARNING = "USR2@120"
DEFAULT_MAX_REQUEUES = 3
#: Slurm keeps the lead time in 16 bits.
_MAX_LEAD = 65535


def parse_signal(text: str) -> tuple[str, int]:
    """Return (signal name without ``SIG``, lead seconds) from ``SIG@SECONDS``; raise :class:`SpecError`.

    Slurm's own spelling: ``USR2@120`` asks for SIGUSR2 120 s before the
    walltime ends; ``SIGUSR2@120`` and ``B:USR2@120`` mean the same.
    """
    raw = str(text).strip()
    match = _SIGNAL.match(raw.upper())
    hint = f"write SIG@SECONDS, e.g. --signal USR2@120; SIG is one of {', '.join(WARNING_SIGNALS)}"
    if match is None:
        raise SpecError("--signal is not SIG@SECONDS", raw, hint)
    name, lead = match.group(1), int(match.group(2))
    if name == "USR1":
        raise SpecError("--signal USR1 is NCCL's signal and never a warning", raw, hint)
    if name not in WARNING_SIGNALS:
        raise SpecError(f"--signal names an unknown or unusable signal SIG{name}", raw, hint)
    if not 1 <= lead <= _MAX_LEAD:
        raise SpecError(f"--signal lead time must be 1–{_MAX_LEAD} seconds", raw, hint)
    return name, lead


def check_request(request: SubmitRequest, settings: SubmitSettings, template: str | None = None) -> str | None:
    """Check ``request`` against the site's rules; return the queue to use.

    Raises :class:`SpecError` for zero or negative nodes, a queue the template
    does not know, a request outside the queue's limits, or a missing account
    where the site requires one.
    """
    where = f"template {template}" if template else "this site"
    # Each value lands on a "#PBS" / "#SBATCH" line: a space or newline in it
    # would cut the directive or start a new one.
    for option, value in (
        ("--job-name", request.job_name),
        ("--queue", request.queue),
        ("--account", request.account),
        ("--filesystems", request.filesystems),
        ("--output", request.output),
    ):
        if value is not None and not _WORD.match(value):
            raise SpecError(
                f"{option} must be one word of printable characters", value, "no spaces, quotes or newlines"
            )
    if request.nodes < 1:
        raise SpecError("nodes must be at least 1", request.nodes, "pass --nodes N with N ≥ 1")
    if request.walltime < 1:
        raise SpecError("walltime must be longer than zero", request.walltime, "pass --time [[HH:]MM:]SS")
    queue = request.queue or settings.default_queue
    if settings.queues:
        known = "; ".join(f"{name} ({limits.describe()})" for name, limits in settings.queues.items())
        if queue is None:
            raise SpecError(f"no queue given and {where} has no default", None, f"pass --queue, one of: {known}")
        if queue not in settings.queues:
            raise SpecError(f"unknown queue for {where}", queue, closest(queue, settings.queues))
        limits = settings.queues[queue]
        if not limits.min_nodes <= request.nodes <= limits.max_nodes:
            raise SpecError(
                f"{plural(request.nodes, 'node')} is outside the limits of queue {queue!r}",
                f"--nodes {request.nodes}",
                f"{queue} takes {limits.describe()}; queues of {where}: {known}",
            )
        if request.walltime > limits.max_seconds:
            raise SpecError(
                f"walltime {format_walltime(request.walltime)} is longer than queue {queue!r} allows",
                f"--time {format_walltime(request.walltime)}",
                f"{queue} takes {limits.describe()}; queues of {where}: {known}",
            )
    if request.warning is not None and request.warning[1] >= request.walltime:
        name, lead = request.warning
        raise SpecError(
            f"--signal lead time {lead} s is not shorter than the walltime {format_walltime(request.walltime)}",
            f"--signal {name}@{lead}",
            f"pass --signal {name}@SECONDS with SECONDS below {request.walltime}, or a longer --time",
        )
    if not 0 <= request.requeue <= 100:
        raise SpecError("requeue must be 0–100 times", request.requeue)
    if request.requeue:
        if not settings.requeue:
            raise SpecError(f"{where} does not allow jobs to requeue", "--requeue", "submit without --requeue")
        if queue is not None and queue in settings.queues and not settings.queues[queue].requeue:
            allowed = [name for name, limits in settings.queues.items() if limits.requeue]
            raise SpecError(
                f"queue {queue!r} of {where} does not allow jobs to requeue",
                "--requeue",
                f"queues that do: {', '.join(allowed)}" if allowed else "submit without --requeue",
            )
    if settings.account_required and not request.account:
        raise SpecError(f"no account given; {where} requires one", None, "pass --account PROJECT (or set EZPZ_ACCOUNT)")
    return queue


def _run_lines(adapter: Scheduler, request: SubmitRequest, launch: str, kept: str | None) -> list[str]:
    """The script's body: the launch line, and with a warning the trap, timer and requeue around it."""
    if request.warning is None:
        return [launch]
    name, lead = request.warning
    lines = [
        f"# SIG{name} reaches this shell; ezpz launch passes it to the ranks as SIGUSR2,",
        f"# they save and stop, and ezpz launch exits {STOPPED_EXIT} (docs/long-runs.md).",
        "# Passed on once: a second signal while ezpz launch exits could cost bash its status.",
        f"trap 'trap \"\" {name}; kill -USR2 $launch' {name}",
        f"{launch} &",
        "launch=$!",
    ]
    if adapter.batch_times_warning:
        lines += [
            f"# No signal comes before the walltime ends: this timer sends it {lead} s early.",
            f"(sleep {request.walltime - lead} && kill -{name} $$) &",
        ]
    lines += [
        "# The trapped signal interrupts wait (status 128+n): wait until ezpz launch has",
        "# exited, then once more for its own exit status, which the shell keeps.",
        "while kill -0 $launch 2>/dev/null; do wait $launch; done",
        "code=0; wait $launch || code=$?",
    ]
    if request.requeue:
        count, again = adapter.batch_requeue(kept or "")
        limit = request.requeue
        lines += [
            f"if [ $code -eq {STOPPED_EXIT} ]; then",
            f"    count={count}",
            f"    if [ $count -lt {limit} ]; then",
            f'        echo "ezpz: the ranks stopped at the warning; requeue $((count + 1)) of {limit}" >&2',
            f"        {again}",
            "    else",
            f'        echo "ezpz: the ranks stopped at the warning; requeued {limit} times already, not again" >&2',
            "    fi",
            "fi",
        ]
    return [*lines, "exit $code"]


def render_script(
    scheduler: Scheduler | str,
    request: SubmitRequest,
    settings: SubmitSettings,
    launch_argv: Sequence[str],
    *,
    template: str | None = None,
    ranks_per_node: int | None = None,
    gpus_per_node: int | None = None,
) -> BatchScript:
    """Render the batch script for ``scheduler`` (an adapter, or its name).  Pure for an adapter.

    ``launch_argv`` is the ``ezpz launch …`` line run inside the job.
    ``ranks_per_node`` and ``gpus_per_node``, when known, size the allocation
    where the scheduler asks for them (Slurm's ``--ntasks-per-node``,
    ``--gpus-per-node``).  Raises :class:`SpecError` for a request
    :func:`check_request` refuses, :class:`SchedulerError` for a scheduler
    without a batch system.
    """
    adapter = pick(schedulers(), {}, scheduler, batch=True)[0] if isinstance(scheduler, str) else scheduler
    queue = check_request(request, settings, template)
    header = adapter.batch_header(request, settings, queue, ranks_per_node, gpus_per_node)
    origin = f"template {template}" if template else "no template"
    # A job that requeues by submitting its script again needs a copy it can
    # read: kept in the submission directory, named after its content.
    kept = None
    if request.requeue:
        digest = hashlib.sha1("\n".join([*header.directives, shlex.join(launch_argv)]).encode()).hexdigest()[:8]
        kept = f"{request.job_name}-{digest}.ezpz.{adapter.name}"
    body = _run_lines(adapter, request, shlex.join(launch_argv), kept)
    lines = [
        header.shebang,
        *header.directives,
        f"# Written by ezpz submit ({adapter.name}, {origin}).",
        "",
        *header.prologue,
        *settings.setup,
        *body,
        "",
    ]
    keep = kept if kept is not None and kept in "\n".join(body) else None
    return BatchScript(scheduler=adapter.name, text="\n".join(lines), submit_argv=adapter.submit_argv, kept=keep)


def submit_script(script: BatchScript, directory: str | None = None) -> str:
    """Submit ``script`` with ``qsub`` / ``sbatch`` and return the job id.

    The script is written to a temporary file (both commands copy it at
    submission) that is removed afterwards, except a script that must be kept
    (:attr:`BatchScript.kept`): that one is written to ``directory`` (default:
    the current directory, which becomes the job's ``$PBS_O_WORKDIR``) and
    stays.  A failed submission raises :class:`SchedulerError` carrying the
    command's first line of output.
    """
    command = script.submit_argv[0]
    if shutil.which(command) is None:
        raise SchedulerError(
            f"{command} not found on PATH",
            command,
            f"run ezpz submit on a login node of a {script.scheduler} site, or use --dry-run to see the script",
        )
    with tempfile.NamedTemporaryFile("w", prefix="ezpz-submit-", suffix=".sh", dir=directory, delete=False) as handle:
        handle.write(script.text)
    path = handle.name
    if script.kept is not None:
        path = os.path.join(directory or os.getcwd(), script.kept)
        os.replace(handle.name, path)
    try:
        done = run_command([*script.submit_argv, path], timeout=60)
    except LaunchError as exc:
        raise SchedulerError(f"{command} could not run", exc.given, exc.hint) from None
    finally:
        if script.kept is None:
            os.unlink(path)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        text = out.strip()
        raise SchedulerError(f"{command} refused the job", text.splitlines()[0] if text else f"exit {done.returncode}")
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    match = _JOB_ID.match(lines[-1]) if lines else None
    if match is None:
        raise SchedulerError(f"{command} printed no job id", out.strip()[:200] or None)
    return match.group(1)


def _nodes_needed(spec: LaunchSpec) -> int | None:
    """Nodes the launch options ask for (-nh, or -n / -ppn), if they say."""
    if spec.nhosts is not None:
        return spec.nhosts
    if spec.np is not None and spec.ppn is not None:
        return spec.np // spec.ppn
    return None


def _ranks_per_node(spec: LaunchSpec, nodes: int) -> int | None:
    if spec.ppn is not None:
        return spec.ppn
    if spec.np is not None and spec.np % nodes == 0:
        return spec.np // nodes
    return None


def plan_submit(
    layers: Sequence[Layer],
    launch_options: Sequence[str],
    *,
    nodes: int | None,
    time: str | None,
    queue: str | None = None,
    account: str | None = None,
    filesystems: str | None = None,
    job_name: str = "ezpz",
    output: str | None = None,
    signal: str | None = None,
    requeue: bool = False,
    max_requeues: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> BatchScript:
    """Resolve template and scheduler, check the request, and render the batch script.

    ``layers`` are the launch spec's layers (config files, then ``flags``), as
    for ``ezpz launch``; the ``EZPZ_*`` environment layer is added here.
    ``launch_options`` are the launch options as the user wrote them; they are
    repeated on the ``ezpz launch`` line inside the script.  ``nodes``
    defaults to what ``-nh`` (or ``-n`` / ``-ppn``) asks for, else 1.
    ``signal`` (``SIG@SECONDS``) asks for the warning; ``requeue`` requeues
    the job after the ranks stopped at it, at most ``max_requeues`` times
    (default :data:`DEFAULT_MAX_REQUEUES`; giving it implies ``requeue``),
    with the warning :data:`DEFAULT_WARNING` when ``signal`` is not given.
    """
    choice = choose(layers, environ, batch=True)
    spec, template = choice.spec, choice.template
    if not spec.command:
        raise SpecError(
            "no command to submit", None, "put it after --: ezpz submit --nodes 2 --time 01:00:00 -- python train.py"
        )
    if time is None:
        raise SpecError("no walltime given", None, "pass --time [[HH:]MM:]SS, e.g. --time 01:00:00")
    needed = _nodes_needed(spec)
    count = nodes if nodes is not None else (needed or 1)
    if needed is not None and count >= 1 and needed > count:
        raise SpecError(
            f"the launch options need {plural(needed, 'node')} but the job asks for {count}",
            f"--nodes {count}",
            f"pass --nodes {needed} or more, or fewer hosts to ezpz launch",
        )
    if max_requeues is not None and not 1 <= max_requeues <= 100:
        raise SpecError("--max-requeues must be 1–100", max_requeues, "or leave it out for 3 (with --requeue)")
    requeues = (max_requeues or DEFAULT_MAX_REQUEUES) if requeue or max_requeues is not None else 0
    request = SubmitRequest(
        nodes=count,
        walltime=parse_walltime(time),
        queue=queue,
        account=account,
        filesystems=filesystems,
        job_name=job_name,
        output=output,
        warning=parse_signal(signal) if signal else (parse_signal(DEFAULT_WARNING) if requeues else None),
        requeue=requeues,
    )
    extra: list[str] = []
    # The job must use the template this script was written for, even when it
    # came from EZPZ_TEMPLATE or the host name rather than a flag (PBS does
    # not pass the environment into the job).
    if template is not None and spec.provenance.get("template") != "flags":
        extra = ["-t", template.path if str(spec.template or "").endswith(".toml") else template.name]
    launch = ["ezpz", "launch", *launch_options, *extra, "--", *spec.command]
    accel = spec.accelerators_per_node
    return render_script(
        choice.adapter,
        request,
        submit_settings(template),
        launch,
        template=template.name if template else None,
        ranks_per_node=_ranks_per_node(spec, count) if count >= 1 else None,
        gpus_per_node=accel if accel else None,
    )
