"""The batch script: rendered from the request, the site's settings and the launch line; submitted.

:func:`render_script` is pure (same inputs, same text); :func:`submit_script`
hands the script to the scheduler's submit command (see :mod:`ezpz.submit`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence

from ezpz.errors import LaunchError, SchedulerError
from ezpz.launch.execute import STOPPED_EXIT, run_command
from ezpz.model.batch import BatchScript, SubmitRequest, SubmitSettings
from ezpz.plugins.manager import schedulers
from ezpz.plugins.registry import pick
from ezpz.schedulers.base import Scheduler
from ezpz.submit.request import check_request

__all__ = ["render_script", "submit_script"]

# What qsub and sbatch --parsable print on success: "8123456.aurora-pbs-0001..." / "123" / "123;cluster".
_JOB_ID = re.compile(r"^(\d+(?:\.[\w.-]+)?)(?:;\S+)?$")


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
