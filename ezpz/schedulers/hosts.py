"""Host lists: hostfiles, Slurm node lists, and the hostfile a subset launch needs.

Pure parsing; the only I/O is :func:`read_hostfile` and :func:`read_host_set`
reading the file they are given.  Slurm's compressed node lists are expanded by the maintained
``python-hostlist`` library, not by hand.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import hostlist

from ezpz.errors import SchedulerError, SpecError

__all__ = [
    "HostSlots",
    "compress_nodelist",
    "expand_nodelist",
    "parse_host_set",
    "parse_hostfile",
    "read_host_set",
    "read_hostfile",
]

_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_PLAIN = re.compile(r"(?:[ \t]*[A-Za-z0-9_][A-Za-z0-9_.\-]*[ \t]*(?:\n|\Z)|[ \t]*\n)*")
_SLOTS_KV = re.compile(r"^(?:slots|max_slots|max-slots)=([0-9]+)$")


@dataclass(frozen=True)
class HostSlots:
    """Hosts in order of first appearance, with slots per host when the file says.

    Attributes:
        hosts: unique host names, in file order.
        slots: slots per host (same order), or ``None`` when the file gives no
            slot counts (plain one-host-per-line files such as ``$PBS_NODEFILE``).
    """

    hosts: tuple[str, ...]
    slots: tuple[int, ...] | None


def parse_hostfile(text: str, origin: str = "hostfile") -> HostSlots:
    """Parse hostfile text in the forms MPI launchers accept.

    Accepted lines: ``host``, ``host:N`` (MPICH), ``host slots=N`` (Open MPI),
    blank lines and ``#`` comments.  A repeated host adds its slots (a repeated
    plain host counts one slot per line).  Anything else raises
    :class:`~ezpz.errors.SpecError` naming ``origin`` and the line number.
    """
    if _PLAIN.fullmatch(text):
        # Fast path for one-host-per-line files (a 10,624-host $PBS_NODEFILE).
        words = text.split()
        counts = Counter(words)
        if not counts:
            raise SpecError(f"{origin} lists no hosts", origin, "write one host per line")
        hosts = tuple(counts)
        return HostSlots(hosts, tuple(counts.values()) if len(hosts) < len(words) else None)
    order: dict[str, int] = {}
    explicit = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        words = line.split()
        host, count = words[0], 1
        if ":" in host:
            host, _, tail = host.partition(":")
            if not (tail.isascii() and tail.isdigit()) or int(tail) < 1:
                raise SpecError(
                    f"bad slot count in {origin} line {number}", raw.strip(), "use host, host:N or host slots=N"
                )
            count, explicit = int(tail), True
        for word in words[1:]:
            match = _SLOTS_KV.match(word)
            if not match or int(match.group(1)) < 1:
                raise SpecError(f"bad entry in {origin} line {number}", raw.strip(), "use host, host:N or host slots=N")
            count, explicit = int(match.group(1)), True
        if not _HOST.match(host):
            raise SpecError(
                f"bad host name in {origin} line {number}",
                raw.strip(),
                "host names are letters, digits, '.', '-' and '_'",
            )
        if host in order:
            explicit = True
        order[host] = order.get(host, 0) + count
    if not order:
        raise SpecError(f"{origin} lists no hosts", origin, "write one host per line")
    return HostSlots(tuple(order), tuple(order.values()) if explicit else None)


def read_hostfile(path: str | Path) -> HostSlots:
    """Read and parse the hostfile at ``path`` (see :func:`parse_hostfile`)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError("hostfile not found", str(path), "give an existing file with one host per line") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError("hostfile is not readable", str(path), type(exc).__name__) from None
    return parse_hostfile(text, origin=str(path))


def expand_nodelist(nodelist: str) -> tuple[str, ...]:
    """Expand a Slurm node list (``nid[001234-001237,001300],gpu7``) into host names."""
    try:
        hosts = hostlist.expand_hostlist(nodelist)
    except hostlist.BadHostlist as exc:
        raise SchedulerError("cannot read SLURM_JOB_NODELIST", nodelist, str(exc)) from None
    if not hosts:
        raise SchedulerError("SLURM_JOB_NODELIST is empty", nodelist, "run inside a Slurm allocation")
    return tuple(hosts)


def compress_nodelist(hosts: tuple[str, ...] | list[str]) -> str:
    """Compress host names into a Slurm node list (inverse of :func:`expand_nodelist`)."""
    return hostlist.collect_hostlist(list(hosts))


_HOST_SET_HINT = "use Slurm host-list syntax (nid[001-004],gpu7), @FILE or a path to a file of hosts"


def parse_host_set(text: str, origin: str) -> tuple[str, ...]:
    """Expand host-list text: words (or lines) in Slurm host-list syntax, ``#`` comments.

    A hostfile's slot counts (``host:4``, ``host slots=4``) are ignored, so a
    hostfile can be given as is.  ``origin`` names the option or file in errors.
    """
    hosts: dict[str, None] = {}
    for raw in text.splitlines():
        for word in raw.partition("#")[0].split():
            if _SLOTS_KV.match(word):
                continue
            try:
                expanded = hostlist.expand_hostlist(word.partition(":")[0])
            except hostlist.BadHostlist as exc:
                raise SpecError(f"cannot read the host list of {origin}: {exc}", word, _HOST_SET_HINT) from None
            hosts.update(dict.fromkeys(expanded))
    if not hosts:
        raise SpecError(f"{origin} names no hosts", text, _HOST_SET_HINT)
    return tuple(hosts)


def read_host_set(value: str, option: str) -> tuple[str, ...]:
    """Hosts named by ``value``: ``@FILE``, a path (it contains ``/``), or a Slurm host list.

    A bare word is always a host list (``n2`` means host n2, never a file
    named ``n2``); write ``@n2`` or ``./n2`` for the file.
    """
    if not value.startswith("@") and "/" not in value:
        return parse_host_set(value, option)
    path = Path(value.removeprefix("@"))
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{option} file not found", str(path), _HOST_SET_HINT) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"{option} file is not readable", str(path), type(exc).__name__) from None
    return parse_host_set(text, f"{option} file {path}")
