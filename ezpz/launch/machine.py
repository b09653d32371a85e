"""The facts of this machine a launch depends on, as one value a test can replace.

:class:`Machine` holds the hostname (site templates match it), the temporary
directory (subset hostfiles go there), the interpreter ezpz runs in, and
four lookups done only when needed: the accelerator probe, a free port,
``which`` and the core count.  :meth:`Machine.here` reads this machine; tests pass a
``Machine(...)`` of their own to :func:`ezpz.launch.resolve.resolve` and
friends instead of patching ``socket`` or ``shutil``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ezpz.net import free_port

__all__ = ["Machine", "probe_accelerators", "probe_cores"]


def probe_accelerators() -> tuple[int, str]:
    """Count this node's accelerators without importing torch.

    Tries ``nvidia-smi -L`` (NVIDIA), ``rocm-smi`` device files (AMD) and
    ``/dev/dri/renderD*`` (Intel); 0 means a CPU-only node.  Returns the
    count and how it was found.
    """
    if shutil.which("nvidia-smi"):
        # Here, not at the top: a dry run needs nothing else from the module that starts processes.
        from ezpz.launch.execute import capture

        out = capture(["nvidia-smi", "-L"], timeout=10)
        count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        if count:
            return count, "nvidia-smi -L"
    kfd = glob.glob("/dev/dri/renderD*")
    if os.path.exists("/dev/kfd") and kfd:
        return len(kfd), "/dev/kfd + /dev/dri"
    if kfd:
        return len(kfd), "/dev/dri/renderD*"
    return 0, "no accelerator found"


def probe_cores(environ: Mapping[str, str]) -> int | None:
    """Cores this host gives the job: Slurm's ``SLURM_CPUS_ON_NODE``, else the CPUs this process may use."""
    raw = environ.get("SLURM_CPUS_ON_NODE", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


@dataclass(frozen=True)
class Machine:
    """The facts of one machine that resolving a launch reads.

    Attributes:
        hostname: this host's name (``socket.gethostname()``).
        tmp_dir: where a launch writes its files (subset hostfiles).
        python: the interpreter ezpz runs in.
        probe: counts accelerators per node; returns (count, how found).
            Called only when neither the spec nor the scheduler says.
        port: returns a free TCP port for the rendezvous.
        which: finds a program on ``PATH`` (``None`` when absent).
        cores: cores per host, from the environment or this host (the
            ranks' default ``OMP_NUM_THREADS`` is cores / ranks per host).
    """

    hostname: str
    tmp_dir: str
    python: str
    probe: Callable[[], tuple[int, str]] = probe_accelerators
    port: Callable[[], int] = free_port
    which: Callable[[str], str | None] = shutil.which
    cores: Callable[[Mapping[str, str]], int | None] = probe_cores

    @classmethod
    def here(cls) -> Machine:
        """Return the machine this process runs on."""
        return cls(hostname=socket.gethostname(), tmp_dir=tempfile.gettempdir(), python=sys.executable)
