"""The reader of every rank's output: console lines, rank logs, how each rank ended.

The launcher labels each rank's output (hydra ``-prepend-pattern``, Open MPI
``--tag-output``, srun and PALS ``--label``: each dialect's ``labels`` in
:mod:`ezpz.schedulers.dialects`), and the per-rank shim ``rank.sh`` adds one
record line when a rank starts and when it ends.  :class:`LineSplitter` turns
one launcher stream into (rank, line) pairs; from those :class:`Supervisor`:

* writes the console one whole line of one rank at a time, tagged ``[2]`` (or
  ``[2@host]`` when the run spans hosts), showing only the ranks asked for;
* writes each rank's log through :class:`~ezpz.launch.rundir.RankLogs`;
* notes the first rank that ended badly, every rank's end, the last lines of
  each rank's stderr and, after a hang dump, where each rank was stuck.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ezpz.errors import plural
from ezpz.launch.rundir import Failure, RankEnd, RankLogs, status_text, strip_ansi

__all__ = ["RECORD", "LineSplitter", "Supervisor"]

#: Start of a record line written by the rank shim (ASCII RS, then ``ezpz``).
RECORD = b"\x1eezpz "
#: Lines of a rank's stderr kept for the failure summary.
TAIL_LINES = 30

_LINE_LABELS = {
    "openmpi": re.compile(rb"^\[\d+,(\d+)\]<std(?:out|err)>: ?"),
    "srun": re.compile(rb"^ *(\d+): ?"),
    "pals": re.compile(rb"^ *(\d+): ?"),
}
_MARKER = re.compile(rb"\[ezpz-rank (\d+)\] ")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+) in (?P<func>.+)$')


@dataclass
class _Rank:
    host: str = ""
    local_rank: int | None = None
    step: str = ""
    tail: collections.deque[bytes] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    dump: dict[str, str] = field(default_factory=dict)
    in_dump: str = ""


def _cut_marker(tail: bytes) -> bool:
    """Whether ``tail`` is the start of a hydra label that the next read completes."""
    head = b"[ezpz-rank "
    if len(tail) <= len(head):
        return head.startswith(tail)
    return re.fullmatch(rb"\[ezpz-rank \d*\]?", tail) is not None


class LineSplitter:
    """Turn one launcher stream into (rank or None, line) pairs, lines without their newline."""

    def __init__(self, launcher: str) -> None:
        self.marked = launcher == "hydra"
        self.label = _LINE_LABELS.get(launcher)
        self.carry = b""
        self.current: int | None = None
        self.partial: dict[int | None, bytes] = {}

    def feed(self, data: bytes) -> list[tuple[int | None, bytes]]:
        """Take the next bytes of the stream; return the lines they completed."""
        data = self.carry + data
        self.carry = b""
        if self.marked:
            return self._marked(data)
        *lines, self.carry = data.split(b"\n")
        return [self._labelled(line) for line in lines]

    def _labelled(self, line: bytes) -> tuple[int | None, bytes]:
        found = self.label.match(line) if self.label else None
        if found is None:
            return None, line
        return int(found.group(1)), line[found.end() :]

    def _marked(self, data: bytes) -> list[tuple[int | None, bytes]]:
        # Keep a marker cut in two by the pipe for the next read.
        start = data.rfind(b"[", max(0, len(data) - 24))
        if start != -1 and _cut_marker(data[start:]):
            data, self.carry = data[:start], data[start:]
        parts = _MARKER.split(data)
        out: list[tuple[int | None, bytes]] = []
        self._text(out, parts[0])
        partial = self.partial
        for i in range(1, len(parts), 2):
            rank, text = int(parts[i]), parts[i + 1]
            # The common case, one whole line per label, without the general path.
            if rank not in partial and text.endswith(b"\n") and text.find(b"\n") == len(text) - 1:
                out.append((rank, text[:-1]))
                self.current = None
                continue
            self.current = rank
            self._text(out, text)
        return out

    def _text(self, out: list[tuple[int | None, bytes]], text: bytes) -> None:
        if not text:
            return
        rank = self.current
        *lines, rest = (self.partial.pop(rank, b"") + text).split(b"\n")
        out.extend((rank, line) for line in lines)
        if lines:
            # After a newline hydra labels the next rank chunk itself:
            # unlabelled bytes from here on are hydra's own messages.
            self.current = None
        if rest:
            self.partial[rank] = rest

    def flush(self) -> Iterator[tuple[int | None, bytes]]:
        """Return what is left without a newline, as last lines."""
        carry, self.carry = self.carry, b""
        if carry and self.marked:
            left: list[tuple[int | None, bytes]] = []
            self._text(left, carry)
            yield from left
        elif carry:
            yield self._labelled(carry)
        for rank, rest in list(self.partial.items()):
            if rest:
                yield rank, rest
        self.partial.clear()


class Supervisor:
    """Read every rank's output, write console and logs, and keep what the end needs.

    Args:
        launcher: the plan's dialect (how lines are labelled).
        np: ranks in the run.
        hosts: the plan's hosts (a rank's host until its start record says).
        ppn: ranks per host.
        run_dir: where the logs go, or ``None`` for none.
        console_ranks: ranks whose lines the console shows (``None``: all).
        tag: label console lines with their rank.
        out, err: the console's byte streams.
    """

    def __init__(
        self,
        launcher: str,
        np: int,
        hosts: tuple[str, ...],
        ppn: int,
        run_dir: Path | None,
        console_ranks: frozenset[int] | None,
        tag: bool,
        out: IO[bytes],
        err: IO[bytes],
        attempt: int = 0,
    ) -> None:
        self.launcher = launcher
        self.np = np
        self.hosts = hosts
        self.ppn = max(ppn, 1)
        self.many_hosts = len(set(hosts)) > 1
        self.console_ranks = console_ranks
        self.tag = tag
        self.console = (out, err)
        self.started = time.monotonic()
        self.last_output = self.started
        self.ranks: dict[int, _Rank] = {}
        self.ends: dict[int, RankEnd] = {}
        self.first: RankEnd | None = None
        self.noexec: dict[int, tuple[int, str]] = {}
        self.lock = threading.Lock()
        self.labels: dict[int, bytes] = {}
        self.splitters = (LineSplitter(launcher), LineSplitter(launcher))
        self.logs = RankLogs(run_dir, self.say, attempt)

    def say(self, message: str) -> None:
        """Write one ``ezpz:`` line to the console's stderr."""
        err = self.console[1]
        err.write(f"ezpz: {message}\n".encode())
        err.flush()

    def feed(self, stream: int, data: bytes) -> None:
        """Take bytes the launcher wrote on ``stream`` (0 stdout, 1 stderr)."""
        with self.lock:
            self.last_output = time.monotonic()
            self._lines(stream, self.splitters[stream].feed(data))

    def close(self) -> None:
        """Flush lines left without a newline and close the logs."""
        with self.lock:
            for stream, splitter in enumerate(self.splitters):
                self._lines(stream, splitter.flush())
            self.logs.close()

    def _lines(self, stream: int, lines: Iterable[tuple[int | None, bytes]]) -> None:
        shown: list[bytes] = []
        logged: dict[int | None, list[bytes]] = {}
        labels = self.labels
        console = self.console_ranks
        for rank, line in lines:
            if stream == 1 and line.startswith(RECORD) and self._record(line):
                continue
            if rank is None or not 0 <= rank < self.np:
                logged.setdefault(None, []).append(line)
                shown.append(line)
                continue
            logged.setdefault(rank, []).append(line)
            if stream == 1:
                info = self._rank(rank)
                info.tail.append(line)
                self._dump_line(info, line)
            if console is None or rank in console:
                if not self.tag:
                    shown.append(line)
                    continue
                label = labels.get(rank)
                if label is None:
                    label = labels[rank] = self._label(rank, self._rank(rank))
                shown.append(label + line)
        if shown:
            target = self.console[stream]
            target.write(b"\n".join(shown) + b"\n")
            target.flush()
        for rank, chunk in logged.items():
            self.logs.write("launcher.log" if rank is None else f"rank-{rank}.log", chunk)
        self.logs.flush()

    def _rank(self, rank: int) -> _Rank:
        info = self.ranks.get(rank)
        if info is None:
            guess = self.hosts[min(rank // self.ppn, len(self.hosts) - 1)] if self.hosts else "?"
            info = self.ranks[rank] = _Rank(host=guess)
        return info

    def _label(self, rank: int, info: _Rank) -> bytes:
        return (f"[{rank}@{info.host}] " if self.many_hosts else f"[{rank}] ").encode()

    def _record(self, line: bytes) -> bool:
        """Take a shim record; return False (it is output) unless it is a whole, well-formed one."""
        words = line[len(RECORD) :].decode(errors="replace").split(" ")
        kind = words[0]
        try:
            rank = int(words[1])
            if kind == "start" and len(words) == 5:
                local_rank = int(words[2])
                info = self._rank(rank)
                info.local_rank, info.host, info.step = local_rank, words[3], words[4]
                self.labels.pop(rank, None)
            elif kind == "exit" and len(words) == 4:
                info = self._rank(rank)
                end = RankEnd(rank, info.local_rank, info.host, int(words[2]), time.monotonic() - self.started)
                self.ends[rank] = end
                if end.status != 0 and self.first is None:
                    self.first = end
            elif kind == "noexec" and len(words) >= 6:
                status, name = int(words[4]), " ".join(words[5:])
                info = self._rank(rank)
                info.local_rank, info.host = int(words[2]), words[3]
                self.noexec[rank] = (status, name)
                end = RankEnd(rank, info.local_rank, info.host, status, time.monotonic() - self.started)
                self.ends[rank] = end
                self.first = self.first or end
            else:
                return False
        except (IndexError, ValueError):
            return False
        return True

    def _dump_line(self, info: _Rank, line: bytes) -> None:
        # faulthandler's dump: "Current thread 0x… (most recent call first):"
        # (or "Thread 0x…"), then one "  File …, line N in func" per frame.
        text = line.decode(errors="replace")
        if text.startswith(("Current thread 0x", "Thread 0x")):
            info.in_dump = "current" if text.startswith("Current") else "thread"
            return
        if not info.in_dump:
            return
        found = _FRAME.match(text)
        if found is None:
            info.in_dump = ""
            return
        where = f"{found['func']} ({os.path.basename(found['file'])}:{found['line']})"
        info.dump.setdefault(info.in_dump, where)

    def stuck(self, rank: int) -> str | None:
        """Where ``rank`` was stuck, from its last stack dump: ``func (file.py:12)``."""
        info = self.ranks.get(rank)
        if info is None:
            return None
        return info.dump.get("current") or info.dump.get("thread")

    def steps(self) -> set[str]:
        """Slurm ``job.step`` ids the ranks reported (for signalling an srun step)."""
        return {info.step for info in self.ranks.values() if info.step not in ("", "-")}

    def stderr_tail(self, rank: int, lines: int = 15) -> list[str]:
        """The last ``lines`` lines rank ``rank`` wrote on stderr."""
        info = self.ranks.get(rank)
        if info is None:
            return []
        kept = [strip_ansi(raw).decode(errors="replace") for raw in info.tail]
        return kept[-lines:]

    def result(self, exit_code: int, reason: str, attempt: int) -> dict[str, Any]:
        """The run as JSON-compatible data (what ``result.json`` holds)."""
        first = self.first
        return {
            "exit_code": exit_code,
            "reason": reason,
            "attempt": attempt,
            "duration_s": round(time.monotonic() - self.started, 3),
            "np": self.np,
            "first_failure": None
            if first is None
            else asdict(
                Failure(first.rank, first.local_rank, first.host, first.code, first.signal, round(first.seconds, 3))
            ),
            "ranks": {
                str(rank): {
                    "host": info.host,
                    "local_rank": info.local_rank,
                    "status": self.ends[rank].status if rank in self.ends else None,
                    "code": self.ends[rank].code if rank in self.ends else None,
                    "signal": self.ends[rank].signal if rank in self.ends else None,
                    "ended_s": round(self.ends[rank].seconds, 3) if rank in self.ends else None,
                    "stuck_in": self.stuck(rank),
                }
                for rank, info in sorted(self.ranks.items())
            },
        }

    def failure_summary(self, log_path: Callable[[int], str]) -> list[str]:
        """The summary block for the first failure, as lines."""
        first = self.first
        if first is None:
            return []
        where = f"local rank {first.local_rank}, " if first.local_rank is not None else ""
        lines = [
            f"rank {first.rank} failed first: {status_text(first.status)}, {first.seconds:.1f} s after start"
            f" ({where}host {first.host})",
        ]
        tail = self.stderr_tail(first.rank)
        if tail:
            lines.append(f"last lines of rank {first.rank}'s stderr:")
            lines += [f"  | {text}" for text in tail]
        others = [end for rank, end in self.ends.items() if rank != first.rank and end.status != 0]
        still = self.np - len(self.ends)
        if others or still:
            lines.append(
                f"{plural(len(others) + still, 'other rank')} ended after it (stopped, or failing because it failed;"
                " not the cause)"
            )
        lines.append(f"its log: {log_path(first.rank)}")
        return lines

    def hang_summary(self) -> list[str]:
        """Where rank 0 and one other rank were stuck, from their stack dumps."""
        dumped = [rank for rank in sorted(self.ranks) if self.stuck(rank)]
        if not dumped:
            return ["no rank dumped its stack (not Python, or the dump signal did not reach it)"]
        first = dumped[0]
        elsewhere = [rank for rank in dumped[1:] if self.stuck(rank) != self.stuck(first)]
        shown = [first, *(elsewhere or dumped[1:])[:1]]
        lines = [f"rank {rank} was stuck in {self.stuck(rank)}" for rank in shown]
        same = sum(1 for rank in dumped if self.stuck(rank) == self.stuck(first))
        lines.append(f"{same} of {self.np} ranks were stuck in {self.stuck(first)} ({len(dumped)} dumped a stack)")
        return lines
