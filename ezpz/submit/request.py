"""What a job may ask for: the warning signal (``--signal``), and the site's rules a request must fit.

:func:`check_request` raises one :class:`~ezpz.errors.SpecError` line for
bad input before anything is written (see :mod:`ezpz.submit`).
"""

from __future__ import annotations

import re

from ezpz.errors import SpecError, closest, plural
from ezpz.model.batch import SubmitRequest, SubmitSettings, format_walltime

__all__ = ["DEFAULT_MAX_REQUEUES", "DEFAULT_WARNING", "WARNING_SIGNALS", "check_request", "parse_signal"]

_WORD = re.compile(r"^[^\s'\"\\]+$")
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
    _check_words(request)
    if request.nodes < 1:
        raise SpecError("nodes must be at least 1", request.nodes, "pass --nodes N with N ≥ 1")
    if request.walltime < 1:
        raise SpecError("walltime must be longer than zero", request.walltime, "pass --time [[HH:]MM:]SS")
    queue = request.queue or settings.default_queue
    if settings.queues:
        _check_queue(request, settings, queue, where)
    if request.warning is not None and request.warning[1] >= request.walltime:
        name, lead = request.warning
        raise SpecError(
            f"--signal lead time {lead} s is not shorter than the walltime {format_walltime(request.walltime)}",
            f"--signal {name}@{lead}",
            f"pass --signal {name}@SECONDS with SECONDS below {request.walltime}, or a longer --time",
        )
    _check_requeue(request, settings, queue, where)
    if settings.account_required and not request.account:
        raise SpecError(f"no account given; {where} requires one", None, "pass --account PROJECT (or set EZPZ_ACCOUNT)")
    return queue


def _check_words(request: SubmitRequest) -> None:
    """Raise on a value of ``request`` that is not one word of printable characters."""
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


def _check_queue(request: SubmitRequest, settings: SubmitSettings, queue: str | None, where: str) -> None:
    """Raise unless ``queue`` is one of the site's queues and ``request`` fits its limits."""
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


def _check_requeue(request: SubmitRequest, settings: SubmitSettings, queue: str | None, where: str) -> None:
    """Raise on a requeue count out of range, or a requeue the site or the queue does not allow."""
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
