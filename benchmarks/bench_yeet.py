"""yeet-env (one rank per node, MPI broadcast of a tar stream) vs a plain sequential copy.

"Nodes" are fake hosts n1..nN under MPICH hydra's fork launcher, all on this
machine: every node shares one disk and the machine's cores, so this measures
the fan-out's overhead and parallelism here, not a real interconnect.  The
sequential baseline is ``shutil.copytree(src, dst_i, symlinks=True)`` once per
node, from the launching process.

Usage: python benchmarks/bench_yeet.py [--packages numpy pandas] [--nodes 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ezpz.envs.yeet import yeet_env


def build_source(root: Path, packages: list[str]) -> tuple[Path, int, int]:
    """A venv holding copies of real installed packages; returns (path, bytes, files)."""
    src = root / "bench-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(src)], check=True)
    site = next((src / "lib").glob("python3*/site-packages"))
    for name in packages:
        mod = __import__(name)
        shutil.copytree(Path(mod.__file__).parent, site / name, symlinks=True)
    files = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink()]
    return src, sum(p.stat().st_size for p in files), len(files)


def sequential(src: Path, out: Path, nodes: int) -> float:
    start = time.perf_counter()
    for i in range(nodes):
        shutil.copytree(src, out / str(i) / "env", symlinks=True)
    return time.perf_counter() - start


def yeet(src: Path, out: Path, nodes: int) -> float:
    hosts = out / "hosts"
    out.mkdir(parents=True)
    hosts.write_text("".join(f"n{i + 1}\n" for i in range(nodes)))
    layers = [("flags", {"hostfile": str(hosts), "launcher_flags": ["-launcher", "fork"]})]
    start = time.perf_counter()
    code, _ = yeet_env(src, f"{out}/{{rank}}/env", layers=layers)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"yeet-env failed with exit {code} at {nodes} node(s)")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", nargs="+", default=["numpy", "pandas"])
    parser.add_argument("--nodes", nargs="+", type=int, default=[1, 2, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-yeet-") as tmp:
        root = Path(tmp)
        src, size, count = build_source(root, args.packages)
        print(f"source: {size / 2**20:.0f} MiB in {count} files ({', '.join(args.packages)})")
        rows = []
        for nodes in args.nodes:
            seq = sequential(src, root / f"seq{nodes}", nodes)
            shutil.rmtree(root / f"seq{nodes}")
            fan = yeet(src, root / f"yeet{nodes}", nodes)
            shutil.rmtree(root / f"yeet{nodes}")
            rows.append(
                {"nodes": nodes, "sequential_s": round(seq, 2), "yeet_s": round(fan, 2), "ratio": round(seq / fan, 2)}
            )
            print(f"{nodes} node(s): sequential {seq:6.2f} s  yeet-env {fan:6.2f} s  sequential/yeet {seq / fan:4.2f}")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
