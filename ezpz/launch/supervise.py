"""Run supervision: one reader for every rank's output, the run directory, the first failure.

``ezpz launch`` reads the launcher's stdout and stderr itself: a
:class:`Session` is one launch, with its run directory
(:mod:`ezpz.launch.rundir`: ``rank-N.log`` for every rank, ``launcher.log``,
``plan.json`` and, at the end, ``result.json``) and one
:class:`~ezpz.launch.reader.Supervisor` per attempt (:mod:`ezpz.launch.reader`:
the console, the rank logs, which rank failed first).  At the end the session
prints the failure summary: the first failing rank, its last lines and error
file, or where the ranks were stuck after a hang.

It costs no process per rank: the labels come from the launcher and the
records from the shell shim the ranks already run in.  :func:`first_failure`
reads the failure record back for other tools (node failover).
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING

from ezpz.launch.reader import RECORD, Supervisor
from ezpz.launch.rundir import (
    Failure,
    RankEnd,
    first_failure,
    make_run_dir,
    read_result,
    recorded_error,
    status_text,
    write_json,
)
from ezpz.launch.shim import RANK_SHIM
from ezpz.model.console import parse_ranks

if TYPE_CHECKING:
    from ezpz.model.plan import Plan

__all__ = [
    "CONSOLE_ALL_RANKS_UP_TO",
    "RANK_SHIM",
    "RECORD",
    "Failure",
    "RankEnd",
    "Session",
    "Supervisor",
    "first_failure",
    "read_result",
    "status_text",
]

#: Up to this many ranks the console shows every rank; above it, rank 0 only
#: (every rank is still logged).  ``--ranks`` overrides the rule.
CONSOLE_ALL_RANKS_UP_TO = 64


def _near_on_path(name: str, environ: dict[str, str]) -> str | None:
    """The executable on PATH whose name is closest to ``name``, if one is close."""
    import difflib  # only when a command cannot start: kept off the launch path

    names: set[str] = set()
    for folder in environ.get("PATH", "").split(os.pathsep):
        try:
            names.update(entry.name for entry in os.scandir(folder or ".") if os.access(entry.path, os.X_OK))
        except OSError:
            continue
    match = difflib.get_close_matches(os.path.basename(name), sorted(names), n=1, cutoff=0.7)
    return match[0] if match else None


class Session:
    """One ``ezpz launch``: its run directory and a :class:`Supervisor` per attempt.

    Args:
        plan: the plan being run (``tag``, ``console_ranks``, ``run_dir`` and counts are read from it).
        environ: the launch's environment (``EZPZ_RUN_DIR``, ``PATH`` for hints).
        out, err: the console's byte streams.
    """

    def __init__(self, plan: Plan, environ: dict[str, str], out: IO[bytes], err: IO[bytes]) -> None:
        self.plan = plan
        self.environ = environ
        self.out, self.err = out, err
        if plan.console_ranks is not None:
            self.console = parse_ranks(plan.console_ranks, plan.np)
        else:
            self.console = None if plan.np <= CONSOLE_ALL_RANKS_UP_TO else frozenset({0})
        given = plan.run_dir or environ.get("EZPZ_RUN_DIR") or None
        self.dir = make_run_dir(given, plan.env.get("EZPZ_LAUNCH_ID", "local"))
        write_json(self.dir / "plan.json", plan.to_dict())
        self.say(f"run directory {self.dir}")
        if self.console is not None and plan.console_ranks is None:
            self.say(
                f"console shows rank 0 of {plan.np} (more than {CONSOLE_ALL_RANKS_UP_TO} ranks; "
                "--ranks all shows every rank); every rank logs to the run directory"
            )

    def say(self, message: str) -> None:
        """Write one ``ezpz:`` line to the console's stderr."""
        self.err.write(f"ezpz: {message}\n".encode())
        self.err.flush()

    def supervisor(self, plan: Plan | None = None, attempt: int = 0) -> Supervisor:
        """A fresh supervisor for attempt ``attempt`` (0 is the first; logs append across attempts).

        ``plan`` is that attempt's plan when it differs from the first (node
        failover replaces a host); it becomes the session's plan.
        """
        if plan is not None:
            self.plan = plan
        plan = self.plan
        return Supervisor(
            plan.launcher, plan.np, plan.hosts, plan.ppn, self.dir, self.console, plan.tag, self.out, self.err, attempt
        )

    def finish(self, sup: Supervisor, launcher_code: int, reason: str, attempt: int) -> int:
        """Close ``sup``, write ``result.json``, print the summary; return the launch's exit code.

        ``reason`` is ``"signal"`` (ezpz was signalled: the code is 128 + n),
        ``"timeout"`` (124) or ``"exited"``; then the first failing rank's
        status wins over the launcher's code.
        """
        sup.close()
        code = launcher_code
        if reason == "exited" and sup.first is not None:
            code = sup.first.status
        if not write_json(self.dir / "result.json", sup.result(code, reason, attempt)):
            self.say(f"could not write {self.dir / 'result.json'}")
        lines: list[str] = []
        if reason == "timeout":
            lines = [f"no output for {self.plan.timeout:g} s: stacks dumped, run stopped (exit {code})"]
            lines += sup.hang_summary()
        elif reason == "exited" and sup.noexec:
            status, name = next(iter(sup.noexec.values()))
            what = "not found" if status == 127 else "not executable"
            near = _near_on_path(name, self.environ) if status == 127 else None
            hint = f"did you mean {near}?" if near else "check the command's name and PATH on the compute nodes"
            count = len(sup.noexec)
            self.err.write(
                f"error: command cannot start on {count} rank{'s' if count != 1 else ''}: {what} ({name}); {hint}\n".encode()
            )
        elif reason == "exited" and sup.first is not None:
            lines = sup.failure_summary(lambda rank: str(self.dir / f"rank-{rank}.log"))
            recorded = recorded_error(self.dir, sup.first.rank)
            if recorded is not None:
                lines.insert(1, f"its error file (torch @record): {recorded}")
        if lines:
            bar = "-" * 24
            block = [f"{bar} ezpz: run failed {bar}", *lines, "-" * (len(bar) * 2 + 18)]
            self.err.write(("\n".join(block) + "\n").encode())
        self.say(f"run directory {self.dir} (exit {code})")
        return code
