"""Per-rank shim: give every rank torchrun's environment, then exec the command.

The launcher runs ``python -m ezpz.rankenv CMD...`` on every rank.  This reads
the rank from the launcher's own variables (:func:`ezpz.ranks.rank_info`),
exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` (the
plan already exported ``MASTER_ADDR``/``MASTER_PORT``), this rank's device
mask when the plan has one (:func:`ezpz.ranks.device_env`) and replaces itself
with ``CMD`` so signals and the exit status belong to the user's program.
Standard library only, so it costs one bare interpreter start per rank.
"""

from __future__ import annotations

import os
import sys

from ezpz.errors import EzpzError
from ezpz.ranks import device_env, rank_info, torchrun_env


def main(argv: list[str] | None = None) -> int:
    """Export the torchrun variables for this rank and exec ``argv``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("error: ezpz.rankenv needs a command to run", file=sys.stderr)
        return 2
    # Our own RANK/WORLD_SIZE from an outer job must not mask the launcher's.
    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    try:
        info = rank_info(environ)
        devices = device_env(environ, info.local_rank)
    except EzpzError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return 2
    os.environ.update(torchrun_env(info))
    os.environ.update(devices)
    try:
        os.execvp(args[0], args)
    except OSError as exc:
        print(f"error: cannot run command ({args[0]!r}): {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
