"""The only module that starts processes.

:func:`execute` runs a :class:`~ezpz.model.plan.Plan`: it writes the plan's files,
starts the launcher in its own process group, forwards SIGINT/SIGTERM to that
group (escalating to SIGKILL if the ranks do not exit), passes the warning
signal (SIGUSR2) on to the ranks without stopping the run, runs the idle
watchdog and the retry loop, and returns the launcher's exit code (what the
end of an attempt means lives in :mod:`ezpz.launch.outcome`).
:func:`capture` runs a short helper command and returns its output.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from ezpz.errors import LaunchError
from ezpz.launch.outcome import STOPPED_EXIT, TIMEOUT_EXIT, backoff, exit_status, retry, signal_exit
from ezpz.launch.supervise import Session, Supervisor, first_failure
from ezpz.log import get_logger
from ezpz.model.plan import Plan
from ezpz.schedulers.dialects import install_hint
from ezpz.schedulers.placement import fail_over

__all__ = ["STOPPED_EXIT", "TIMEOUT_EXIT", "WARNING_SIGNAL", "capture", "execute", "find_launcher", "run_command"]

#: The warning signal: received by ``ezpz launch``, passed on to the ranks.
WARNING_SIGNAL = signal.SIGUSR2
#: Seconds between SIGTERM and SIGKILL when stopping the launcher's group
#: after Ctrl-C, a failed rank or the idle watchdog (a SIGTERM from outside
#: gets the plan's ``stop_grace``).
GRACE = 5.0
#: Signal that makes every Python rank write all threads' stacks (through the
#: sitecustomize hook ``rank.sh`` puts on PYTHONPATH).  Not SIGUSR1 (NCCL's),
#: not SIGUSR2 (the warning signal); hydra and Open MPI forward SIGALRM.
DUMP_SIGNAL = signal.SIGALRM
#: Longest wait for the stack dumps after :data:`DUMP_SIGNAL` was sent.
DUMP_WAIT = 5.0

log = get_logger("ezpz.execute")


def run_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a short helper command (a probe, ``qsub``) and return it finished, output as text.

    A command that cannot start or outlives ``timeout`` raises
    :class:`~ezpz.errors.LaunchError`; a non-zero exit is the caller's to judge.
    """
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
        )
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{argv[0]} did not finish in {timeout:g}s", shlex.join(argv)) from None
    except OSError as exc:
        raise LaunchError(f"{argv[0]} could not run", shlex.join(argv), exc.strerror) from None


def capture(argv: Sequence[str], *, timeout: float = 30) -> str:
    """Run a short probe and return its output ("" when it cannot run or fails to finish)."""
    try:
        done = run_command(argv, timeout=timeout)
        return done.stdout + done.stderr
    except LaunchError:
        return ""


def find_launcher(name: str) -> str:
    """Return the path of launcher ``name``: on PATH, else beside this interpreter.

    The second place finds the ``mpiexec`` that ``pip install mpich`` put in a
    virtual environment that is not activated.
    """
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        raise LaunchError(f"launcher {name!r} not found on PATH", name, install_hint(name))
    return found


def _write_files(plan: Plan) -> None:
    for path, content in plan.files:
        target = Path(path)
        if target.exists() and target.read_text() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(content)
        tmp.replace(target)


def _pump(src: IO[bytes], dst: IO[bytes], seen: list[float]) -> None:
    """Copy bytes from the child to our stream, noting when output last arrived."""
    while chunk := os.read(src.fileno(), 65536):
        seen[0] = time.monotonic()
        dst.write(chunk)
        dst.flush()


def _read(src: IO[bytes], sup: Supervisor, stream: int) -> None:
    """Hand every chunk the launcher writes on ``stream`` to the supervisor."""
    while chunk := os.read(src.fileno(), 65536):
        sup.feed(stream, chunk)


def _hydra_ranks(launcher: int) -> list[int]:
    """The ranks under an MPICH hydra ``mpiexec``: the children of its ``hydra_pmi_proxy``.

    Hydra does not pass SIGUSR2 on (it dies of it) and starts each rank in a
    process group of its own, so the warning goes to each rank's group (the
    rank shim and the command under it).  Linux ``/proc`` only; ranks on other
    hosts (ssh bootstrap) are not reached.
    """
    parent: dict[int, int] = {}
    name: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = entry.read_text()
            pid = int(entry.parent.name)
            name[pid] = text[text.index("(") + 1 : text.rindex(")")]
            parent[pid] = int(text[text.rindex(")") + 2 :].split()[1])
    proxies = {pid for pid, ppid in parent.items() if ppid == launcher and name[pid] == "hydra_pmi_proxy"}
    return sorted(pid for pid, ppid in parent.items() if ppid in proxies)


class _Run:
    """One attempt: the launcher process, the signals aimed at it, and its supervisor."""

    def __init__(
        self, plan: Plan, argv: Sequence[str], environ: Mapping[str, str], sup: Supervisor | None = None
    ) -> None:
        self.plan = plan
        self.sup = sup
        self.signalled: int | None = None
        self.warn_pending = False
        self.warned = False
        self.reason = "exited"
        piped = sup is not None or plan.timeout is not None
        self.proc = subprocess.Popen(
            argv,
            env={**environ, **plan.env},
            start_new_session=True,
            stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.PIPE if piped else None,
        )
        self.seen = [time.monotonic()]
        self.pumps = []
        # Readable when the launcher exits (Linux >= 5.3): wait() wakes then, not up to 50 ms later.
        try:
            self.exit_fd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.exit_fd = None
        if piped:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            for stream, (src, dst) in enumerate(
                ((self.proc.stdout, sys.stdout.buffer), (self.proc.stderr, sys.stderr.buffer))
            ):
                args = (src, sup, stream) if sup is not None else (src, dst, self.seen)
                pump = threading.Thread(target=_read if sup is not None else _pump, args=args, daemon=True)
                pump.start()
                self.pumps.append(pump)

    def last_output(self) -> float:
        return self.sup.last_output if self.sup is not None else self.seen[0]

    def kill_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def warn(self) -> bool:
        """Pass the warning to the ranks; return False when none is running yet (try again)."""
        if self.plan.launcher != "hydra":
            # srun, Open MPI's mpirun and PALS pass SIGUSR2 on to every rank.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, WARNING_SIGNAL)
            self.warned = True
            return True
        ranks = _hydra_ranks(self.proc.pid)
        if not ranks:
            return False
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), WARNING_SIGNAL)
        log.warning("warning signal: passed SIGUSR2 to %d ranks; the run goes on until they stop", len(ranks))
        self.warned = True
        return True

    def stop(self, sig: int) -> None:
        """Send ``sig`` to the whole group; SIGKILL it if it outlives the grace period.

        A SIGTERM from outside (the scheduler) gives the ranks the plan's
        ``stop_grace`` seconds to save; everything else gives :data:`GRACE`.
        """
        if sig == signal.SIGINT and self.plan.launcher == "srun":
            # srun takes one SIGINT as "report status" and cancels only on a
            # second within 1 s; SIGTERM cancels the step at once.
            sig = signal.SIGTERM
        grace = self.plan.stop_grace if self.signalled == signal.SIGTERM else GRACE
        deadline = time.monotonic() + grace
        self.kill_group(sig)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill_group(signal.SIGKILL)
            self.proc.wait()
        # Ranks still cleaning up after the launcher left get the rest of the
        # grace period; those that outlive it (or ignored the signal) still die.
        while time.monotonic() < deadline and self.group_alive():
            time.sleep(0.05)
        self.kill_group(signal.SIGKILL)

    def group_alive(self) -> bool:
        """Whether any process of the launcher's group is still running."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def dump_stacks(self) -> None:
        """Ask every Python rank for its stacks (:data:`DUMP_SIGNAL`) and give them time to arrive.

        hydra, Open MPI (and PALS) forward the signal from the launcher to each
        rank's processes; srun would cancel the step on it, so the step's tasks
        get it through ``scancel --signal``.
        """
        steps = self.sup.steps() if self.sup is not None else set()
        if self.plan.launcher == "srun" and steps:
            for step in sorted(steps):
                with contextlib.suppress(LaunchError):
                    run_command(["scancel", f"--signal={DUMP_SIGNAL.name.removeprefix('SIG')}", step], timeout=10)
        elif self.plan.launcher != "srun":
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, DUMP_SIGNAL)
        # Until the dumps stop coming (0.5 s quiet), at most DUMP_WAIT seconds.
        asked = time.monotonic()
        while time.monotonic() - asked < DUMP_WAIT and self.proc.poll() is None:
            time.sleep(0.1)
            if time.monotonic() - max(self.last_output(), asked) > 0.5 and time.monotonic() - asked > 1.0:
                break

    def wait(self) -> int:
        timeout = self.plan.timeout
        while True:
            if self.exit_fd is not None:
                select.select([self.exit_fd], [], [], 0.1)
            try:
                code = self.proc.wait(0 if self.exit_fd is not None else 0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.warn_pending:
                self.warn_pending = not self.warn()
            if self.signalled is not None:
                self.reason = "signal"
                self.stop(self.signalled)
                code = signal_exit(self.signalled)
                break
            if self.sup is not None and self.sup.first is not None:
                # One rank failed: stop the others now (hydra would let them run on).
                self.stop(signal.SIGTERM)
                code = self.proc.returncode
                break
            if timeout is not None and time.monotonic() - self.last_output() > timeout:
                log.error("no output for %ss: stopping the launch (exit %d)", timeout, TIMEOUT_EXIT)
                self.reason = "timeout"
                self.dump_stacks()
                self.stop(signal.SIGTERM)
                code = TIMEOUT_EXIT
                break
        if self.exit_fd is not None:
            os.close(self.exit_fd)
        for pump in self.pumps:
            pump.join(5)
        if code == 0 and self.warned:
            log.warning("the ranks stopped at the warning: exit %d; run the same command again to resume", STOPPED_EXIT)
        return exit_status(code, self.warned)


def execute(
    plan: Plan, environ: Mapping[str, str] | None = None, *, sleep: Callable[[float], None] = time.sleep
) -> int:
    """Run ``plan``; return the launcher's exit code (124 on idle timeout).

    SIGINT and SIGTERM sent to this process are forwarded to the launcher's
    process group, and the run then ends with ``128 + signal``; after a
    SIGTERM the ranks have ``plan.stop_grace`` seconds before SIGKILL.
    SIGUSR2, the warning, is passed on to the ranks and the run goes on; if
    they then all exit 0 the result is :data:`STOPPED_EXIT`.  A failed run is
    retried ``plan.retries`` times with exponential backoff (1 s, 2 s, 4 s, …
    at most 60 s, waited with ``sleep``); an interrupted or warned run is never retried.  With spare
    hosts (``plan.failover``), each retry replaces the first failing rank's host
    by a spare, and the launch stops when none is left.
    """
    binary = find_launcher(plan.argv[0])
    env = dict(os.environ if environ is None else environ)
    session = Session(plan, env, sys.stdout.buffer, sys.stderr.buffer) if plan.supervise else None
    _write_files(plan)
    code = 0
    for attempt in range(plan.retries + 1):
        if attempt:
            delay = backoff(attempt)
            log.warning("launch failed with exit %d; retry %d/%d in %.0fs", code, attempt, plan.retries, delay)
            sleep(delay)
        code, run = _attempt(plan, binary, env, session, attempt)
        if not retry(code, attempt, plan.retries, interrupted=run.signalled is not None or run.warned):
            break
        if session is not None and run.reason == "exited":
            try:
                plan = _fail_over(plan, session.dir)
            except LaunchError as exc:
                log.error("%s", exc.line())
                break
    return code


def _attempt(
    plan: Plan, binary: str, env: Mapping[str, str], session: Session | None, attempt: int
) -> tuple[int, _Run]:
    """Run attempt ``attempt`` (0 is the first) with SIGINT, SIGTERM and the warning forwarded to it.

    Returns its exit code (the session's verdict when supervised) and the run.
    """
    sup = session.supervisor(plan, attempt) if session is not None else None
    extra = {"EZPZ_ATTEMPT": str(attempt)}
    if session is not None:
        extra["EZPZ_RUN_DIR"] = str(session.dir.resolve())
    run = _Run(plan, (binary, *plan.argv[1:]), {**env, **extra}, sup)

    def forward(signum: int, _frame: object) -> None:
        if signum == WARNING_SIGNAL:
            run.warn_pending = True
        else:
            run.signalled = signum

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, WARNING_SIGNAL):
            previous[sig] = signal.signal(sig, forward)
    try:
        code = run.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if session is not None and sup is not None:
        code = session.finish(sup, code, run.reason, attempt)
    return code, run


def _fail_over(plan: Plan, run_dir: Path) -> Plan:
    """The next attempt's plan: the failed rank's host replaced by a spare (issue #14), else ``plan``.

    Raises :class:`~ezpz.errors.LaunchError` naming the failed hosts when no spare is left.
    """
    try:
        failure = first_failure(run_dir)
    except LaunchError:
        failure = None  # no failure record: retry as it was
    nxt = fail_over(plan, failure)
    if nxt is None:
        return plan
    new, dropped = nxt
    spare = next(host for host in new.hosts if host not in plan.hosts)
    log.warning("dropping host %s (%s); spare %s takes its place", dropped, dict(new.left_out)[dropped], spare)
    _write_files(new)
    return new
