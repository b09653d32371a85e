"""``ezpz submit``: a PBS or Slurm batch script from the same spec as ``ezpz launch``.

The script is rendered from three things:

* the **request**: nodes, walltime, queue, account, filesystems, job name
  (:class:`SubmitRequest`);
* the template's ``[submit]`` table: the site's queues and their limits,
  whether an account is required, default filesystems, the environment
  set-up lines (:class:`SubmitSettings`);
* the **launch line**: ``ezpz launch [the same launch options] -- CMD``,
  which runs inside the job and resolves the allocation there.

:func:`render_script` is pure (same inputs, same text);
:func:`check_request` raises a one-line :class:`~ezpz.errors.SpecError` for
bad input before anything is written.  :func:`choose_scheduler` and
:func:`submit_script` are the impure edges: the first may look for ``qsub`` /
``sbatch`` on ``PATH``, the second hands the script to them through
:func:`ezpz.launch.execute.capture`.

The ``[submit]`` table itself is :class:`ezpz.model.template.SubmitSettings`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ezpz.errors import LaunchError, SchedulerError, SpecError, closest
from ezpz.launch.templates import find_template, templates_for_host
from ezpz.model.spec import LaunchSpec, Layer, env_layer, merge_layers
from ezpz.model.template import SubmitSettings, Template, format_walltime, parse_walltime, submit_settings

__all__ = [
    "BATCH_SCHEDULERS",
    "BatchScript",
    "SubmitRequest",
    "check_request",
    "choose_scheduler",
    "plan_submit",
    "render_script",
    "submit_script",
]

#: Schedulers ezpz writes batch scripts for, and the command that submits one.
BATCH_SCHEDULERS: dict[str, tuple[str, ...]] = {
    "pbs": ("qsub",),
    "slurm": ("sbatch", "--parsable"),
}

_WORD = re.compile(r"^[^\s'\"\\]+$")
# What qsub and sbatch --parsable print on success: "8123456.aurora-pbs-0001..." / "123" / "123;cluster".
_JOB_ID = re.compile(r"^(\d+(?:\.[\w.-]+)?)(?:;\S+)?$")


@dataclass(frozen=True)
class SubmitRequest:
    """What the user asks of the batch system.

    Attributes:
        nodes: nodes to allocate.
        walltime: seconds the job may run.
        queue: queue (PBS) or partition / QOS (Slurm); ``None`` for the default.
        account: project to charge.
        filesystems: PBS ``-l filesystems=``; ``None`` for the template's default.
        job_name: the job's name.
        output: file for the job's output; ``None`` for the scheduler's default
            (PBS) or ``<job_name>-<jobid>.out`` (Slurm).
    """

    nodes: int
    walltime: int
    queue: str | None = None
    account: str | None = None
    filesystems: str | None = None
    job_name: str = "ezpz"
    output: str | None = None


@dataclass(frozen=True)
class BatchScript:
    """A rendered batch script and the command that submits it.

    Attributes:
        scheduler: ``pbs`` or ``slurm``.
        text: the script.
        submit_argv: the submit command, to which the script's path is appended.
    """

    scheduler: str
    text: str
    submit_argv: tuple[str, ...]


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
                f"{request.nodes} nodes is outside the limits of queue {queue!r}",
                f"--nodes {request.nodes}",
                f"{queue} takes {limits.describe()}; queues of {where}: {known}",
            )
        if request.walltime > limits.max_seconds:
            raise SpecError(
                f"walltime {format_walltime(request.walltime)} is longer than queue {queue!r} allows",
                f"--time {format_walltime(request.walltime)}",
                f"{queue} takes {limits.describe()}; queues of {where}: {known}",
            )
    if settings.account_required and not request.account:
        raise SpecError(f"no account given; {where} requires one", None, "pass --account PROJECT (or set EZPZ_ACCOUNT)")
    return queue


def _pbs_header(request: SubmitRequest, settings: SubmitSettings, queue: str | None) -> list[str]:
    select = f"select={request.nodes}" + (f":system={settings.system}" if settings.system else "")
    lines = [f"#PBS -N {request.job_name}"]
    if request.account:
        lines.append(f"#PBS -A {request.account}")
    if queue:
        lines.append(f"#PBS -q {queue}")
    lines.append(f"#PBS -l {select}")
    if settings.place:
        lines.append(f"#PBS -l place={settings.place}")
    lines.append(f"#PBS -l walltime={format_walltime(request.walltime)}")
    filesystems = request.filesystems or settings.filesystems
    if filesystems:
        lines.append(f"#PBS -l filesystems={filesystems}")
    # One output file, stdout and stderr joined, as users read it.
    lines.append("#PBS -j oe")
    if request.output:
        lines.append(f"#PBS -o {request.output}")
    return lines


def _slurm_header(
    request: SubmitRequest, settings: SubmitSettings, queue: str | None, ppn: int | None, gpus: int | None
) -> list[str]:
    lines = [f"#SBATCH --job-name={request.job_name}"]
    if request.account:
        lines.append(f"#SBATCH --account={request.account}")
    if queue:
        limits = settings.queues.get(queue)
        option = (limits.option if limits else None) or settings.queue_option
        lines.append(f"#SBATCH --{option}={queue}")
    lines.append(f"#SBATCH --nodes={request.nodes}")
    # The allocation must hold the ranks the launch line will start.
    if ppn:
        lines.append(f"#SBATCH --ntasks-per-node={ppn}")
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    if settings.constraint:
        lines.append(f"#SBATCH --constraint={settings.constraint}")
    lines.append(f"#SBATCH --time={format_walltime(request.walltime)}")
    lines.append(f"#SBATCH --output={request.output or request.job_name + '-%j.out'}")
    return lines


def render_script(
    scheduler: str,
    request: SubmitRequest,
    settings: SubmitSettings,
    launch_argv: Sequence[str],
    *,
    template: str | None = None,
    ranks_per_node: int | None = None,
    gpus_per_node: int | None = None,
) -> BatchScript:
    """Render the batch script for ``scheduler`` (``pbs`` or ``slurm``).  Pure.

    ``launch_argv`` is the ``ezpz launch …`` line run inside the job.
    ``ranks_per_node`` and ``gpus_per_node``, when known, size a Slurm
    allocation (``--ntasks-per-node``, ``--gpus-per-node``); PBS allocates
    whole nodes.  Raises :class:`SpecError` for a request :func:`check_request`
    refuses.
    """
    if scheduler not in BATCH_SCHEDULERS:
        raise SchedulerError(
            "ezpz submit writes batch scripts for PBS and Slurm only",
            scheduler,
            "pass --scheduler pbs or --scheduler slurm",
        )
    queue = check_request(request, settings, template)
    # PBS starts the job in $HOME with a bare environment: a login shell gives
    # it the module command, and the script moves to the submission directory.
    # sbatch passes the submitting shell's environment and directory on, and a
    # login shell would reset PATH (a user's activated venv) from /etc/profile.
    if scheduler == "pbs":
        shell = "#!/bin/bash -l"
        header = _pbs_header(request, settings, queue)
        workdir = ['cd "$PBS_O_WORKDIR"']
    else:
        shell = "#!/bin/bash"
        header = _slurm_header(request, settings, queue, ranks_per_node, gpus_per_node)
        workdir = []
    origin = f"template {template}" if template else "no template"
    lines = [
        shell,
        *header,
        f"# Written by ezpz submit ({scheduler}, {origin}).",
        "",
        *workdir,
        *settings.setup,
        shlex.join(launch_argv),
        "",
    ]
    return BatchScript(scheduler=scheduler, text="\n".join(lines), submit_argv=BATCH_SCHEDULERS[scheduler])


def choose_scheduler(
    named: str | None,
    template: Template | None,
    active: Sequence[str],
    which: Mapping[str, str | None] | None = None,
) -> tuple[str, str]:
    """Decide which batch system to write for; return it and why.

    Order: ``named`` (``--scheduler`` / ``EZPZ_SCHEDULER`` / config), the
    template's scheduler, a batch scheduler whose job we are inside
    (``active``), then the one whose submit command is on ``PATH`` (``which``
    maps a command to its path; default: look it up).
    """
    if named:
        return named, "chosen"
    if template is not None:
        return template.scheduler, f"template {template.name}"
    inside = [name for name in active if name in BATCH_SCHEDULERS]
    if inside:
        return inside[0], "inside its job"
    found = {name: argv[0] for name, argv in BATCH_SCHEDULERS.items()}
    paths = which if which is not None else {cmd: shutil.which(cmd) for cmd in found.values()}
    on_path = [name for name, cmd in found.items() if paths.get(cmd)]
    if len(on_path) == 1:
        return on_path[0], f"{found[on_path[0]]} on PATH"
    given = ", ".join(found[name] for name in on_path) if on_path else None
    raise SchedulerError(
        "cannot tell which batch system to submit to",
        given,
        "pass --scheduler pbs|slurm or --template NAME (see ezpz templates list)",
    )


def submit_script(script: BatchScript, directory: str | None = None) -> str:
    """Submit ``script`` with ``qsub`` / ``sbatch`` and return the job id.

    The script is written to a temporary file (both commands copy it at
    submission) that is removed afterwards.  A failed submission raises
    :class:`SchedulerError` carrying the command's first line of output.
    """
    from ezpz.launch.execute import run_command

    command = script.submit_argv[0]
    if shutil.which(command) is None:
        raise SchedulerError(
            f"{command} not found on PATH",
            command,
            f"run ezpz submit on a login node of a {script.scheduler} site, or use --dry-run to see the script",
        )
    with tempfile.NamedTemporaryFile("w", prefix="ezpz-submit-", suffix=".sh", dir=directory, delete=False) as handle:
        handle.write(script.text)
    try:
        done = run_command([*script.submit_argv, handle.name], timeout=60)
    except LaunchError as exc:
        raise SchedulerError(f"{command} could not run", exc.given, exc.hint) from None
    finally:
        os.unlink(handle.name)
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
    environ: Mapping[str, str] | None = None,
) -> BatchScript:
    """Resolve template and scheduler, check the request, and render the batch script.

    ``layers`` are the launch spec's layers (config files, then ``flags``), as
    for ``ezpz launch``; the ``EZPZ_*`` environment layer is added here.
    ``launch_options`` are the launch options as the user wrote them; they are
    repeated on the ``ezpz launch`` line inside the script.  ``nodes``
    defaults to what ``-nh`` (or ``-n`` / ``-ppn``) asks for, else 1.
    """
    import socket

    from ezpz.plugins.manager import schedulers

    env = os.environ if environ is None else environ
    layers = list(layers)
    cut = sum(1 for name, _ in layers if name.startswith("config:"))
    user = [*layers[:cut], ("env", env_layer(env)), *layers[cut:]]
    wanted, provenance = merge_layers(user)
    template = find_template(str(wanted["template"])) if wanted.get("template") else None
    active = [name for name, adapter in schedulers().items() if adapter.affinity(env) >= 2]
    scheduler, _ = choose_scheduler(wanted.get("scheduler"), template, active)
    if template is None:
        auto = templates_for_host(socket.gethostname(), scheduler)
        template = auto[0] if auto else None
    base: list[Layer] = [(f"template:{template.name}", template.defaults)] if template else []
    spec = LaunchSpec.from_layers([*base, *user])
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
            f"the launch options need {needed} nodes but the job asks for {count}",
            f"--nodes {count}",
            f"pass --nodes {needed} or more, or fewer hosts to ezpz launch",
        )
    request = SubmitRequest(
        nodes=count,
        walltime=parse_walltime(time),
        queue=queue,
        account=account,
        filesystems=filesystems,
        job_name=job_name,
        output=output,
    )
    extra: list[str] = []
    # The job must use the template this script was written for, even when it
    # came from EZPZ_TEMPLATE or the host name rather than a flag (PBS does
    # not pass the environment into the job).
    if template is not None and provenance.get("template") != "flags":
        extra = ["-t", template.path if str(wanted.get("template", "")).endswith(".toml") else template.name]
    launch = ["ezpz", "launch", *launch_options, *extra, "--", *spec.command]
    accel = spec.accelerators_per_node
    return render_script(
        scheduler,
        request,
        submit_settings(template),
        launch,
        template=template.name if template else None,
        ranks_per_node=_ranks_per_node(spec, count) if count >= 1 else None,
        gpus_per_node=accel if accel else None,
    )
