"""``python -m ezpz.envs``: the yeet-env worker, one rank per node (started by :func:`ezpz.envs.yeet.yeet_env`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ezpz.envs.yeet import yeet_worker

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the worker with command-line arguments; return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m ezpz.envs", description="yeet-env worker (one rank per node)")
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--compress", action="store_true")
    parser.add_argument("--min-nodes", type=int, default=0)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    return yeet_worker(args.src, args.dst, args.compress, args.min_nodes, args.report)


if __name__ == "__main__":
    raise SystemExit(main())
