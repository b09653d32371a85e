"""The one way ezpz picks a TCP port: free now, and outside the kernel's ephemeral range.

Used by the launch path (a launch's ``MASTER_PORT``) and by the runtime (rank
0's offer when the ranks agree over MPI); standard library only.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

__all__ = ["free_port"]

_handed_out: set[int] = set()


def free_port() -> int:
    """Return a TCP port that is free on this host now.

    The port is chosen below the kernel's ephemeral range
    (``/proc/sys/net/ipv4/ip_local_port_range``), which the kernel never hands
    out for ``bind(0)``: an ephemeral port could be taken between now and the
    moment rank 0 binds it (MPICH's own control socket did exactly that).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    span = max(low - 20000, 1)
    start = 20000 + (os.getpid() * 7919 + int(time.monotonic() * 1000)) % span
    for offset in range(200):
        port = 20000 + (start - 20000 + offset) % span
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])
