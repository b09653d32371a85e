"""What the end of a launch attempt means: its exit status, whether another attempt follows, and when.

Pure (no processes, no clock): :func:`ezpz.launch.execute.execute` runs the
attempts and asks here.
"""

from __future__ import annotations

__all__ = ["MAX_BACKOFF", "STOPPED_EXIT", "TIMEOUT_EXIT", "backoff", "exit_status", "retry", "signal_exit"]

#: Exit status of a run killed by the idle watchdog (as coreutils ``timeout``).
TIMEOUT_EXIT = 124
#: Exit status of a run whose ranks got the warning and then all exited 0:
#: stopped early with its state saved; the same command resumes it
#: (``EX_TEMPFAIL``).  ``ezpz submit --requeue`` requeues on it.
STOPPED_EXIT = 75
#: The longest wait, in seconds, before a retry.
MAX_BACKOFF = 60.0


def exit_status(code: int, warned: bool) -> int:
    """The exit status of an attempt whose launcher ended with ``code`` (as ``Popen.returncode`` gives it).

    A launcher killed by a signal (a negative code) reports 128 + signal, as
    a shell does; 0 after the warning was passed on is :data:`STOPPED_EXIT`.
    """
    if code == 0 and warned:
        return STOPPED_EXIT
    return 128 - code if code < 0 else code


def signal_exit(signum: int) -> int:
    """The exit status of a run stopped because ``ezpz launch`` got signal ``signum``: 128 + signal."""
    return 128 + signum


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (1 is the first retry): 1, 2, 4, ..., at most :data:`MAX_BACKOFF`."""
    return min(2.0 ** (attempt - 1), MAX_BACKOFF)


def retry(code: int, attempt: int, retries: int, *, interrupted: bool) -> bool:
    """Whether attempt ``attempt`` (0 is the first) that ended with ``code`` is followed by another.

    Never after success or a stop at the warning (:data:`STOPPED_EXIT`), an
    interrupted run (a signal to ``ezpz launch``, or the warning passed on),
    or the last of ``retries`` retries.
    """
    return code not in (0, STOPPED_EXIT) and not interrupted and attempt < retries
