"""``ezpz yeet-env`` for real: MPICH hydra's fork launcher on fake hosts n1..nN,
one rank per "node", each node writing to its own destination (``{rank}`` in
``--dst``).  Out-of-space nodes are real small tmpfs mounts (needs root; skipped
otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ezpz.envs.discover import activate_line, env_at
from ezpz.envs.yeet import fix_prefix, yeet_env
from ezpz.errors import EnvToolError, EzpzError


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv (no pip) with a package and a console script."""
    root = tmp_path_factory.mktemp("src") / "proj-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python3*/site-packages"))
    (site / "yeetpkg.py").write_text("VALUE = 42\n")
    script = root / "bin" / "yeet-hello"
    script.write_text(f"#!{root}/bin/python\nimport yeetpkg\nprint(yeetpkg.VALUE)\n")
    script.chmod(0o755)
    return root


def hostfile(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "hosts"
    path.write_text("".join(f"n{i + 1}\n" for i in range(n)))
    return path


def fork_layers(tmp_path: Path, n: int) -> list[tuple[str, dict[str, object]]]:
    return [("flags", {"hostfile": str(hostfile(tmp_path, n)), "launcher_flags": ["-launcher", "fork"]})]


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root) to run a node out of space for real")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_two_fake_nodes_get_working_copies(tmp_path: Path, venv: Path) -> None:
    report = tmp_path / "report.json"
    dst = tmp_path / "node{rank}" / "env"
    code, target = yeet_env(venv, dst, layers=fork_layers(tmp_path, 2), report=report)
    assert code == 0 and target == dst
    results = json.loads(report.read_text())
    assert [(r["rank"], r["ok"]) for r in results] == [(0, True), (1, True)]
    for rank in (0, 1):
        copy = tmp_path / f"node{rank}" / "env"
        assert (
            f'VIRTUAL_ENV="{copy}"' in (copy / "bin" / "activate").read_text()
            or str(copy) in (copy / "bin" / "activate").read_text()
        )
        assert (copy / "bin" / "yeet-hello").read_text().startswith(f"#!{copy}/bin/python\n")
        shell = f"source {copy}/bin/activate && python -c 'import sys, yeetpkg; print(sys.prefix)' && yeet-hello"
        out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.split()
        assert out == [str(copy), "42"]
        assert not list(copy.parent.glob(".*yeet*")), "staging directories left behind"
    assert activate_line(env_at(venv), tmp_path / "x") == f"source {tmp_path / 'x' / 'bin' / 'activate'}"


def test_compressed_ships_the_tarball(tmp_path: Path, venv: Path) -> None:
    dst = tmp_path / "c{rank}" / "env"
    code, _ = yeet_env(venv, dst, compress=True, layers=fork_layers(tmp_path, 2))
    assert code == 0
    tarball = venv.parent / "proj-env.tar.gz"
    assert tarfile.is_tarfile(tarball)
    for rank in (0, 1):
        assert (tmp_path / f"c{rank}" / "env" / "bin" / "yeet-hello").is_file()


def test_a_full_node_fails_alone_and_keeps_its_old_copy(tmp_path: Path, tiny_tmpfs: Path) -> None:
    # Node 1 writes to a 64 KiB tmpfs and the environment holds 256 KiB: its
    # space check fails, node 0 still gets its copy.
    src = tmp_path / "big-env"
    (src / "bin").mkdir(parents=True)
    (src / "blob").write_bytes(b"z" * (256 << 10))
    old = tiny_tmpfs / "n1" / "env"
    old.mkdir(parents=True)
    (old / "OLD").write_text("previous copy\n")
    dst = f"{tmp_path}/{{rank}}/env"
    (tmp_path / "1").symlink_to(tiny_tmpfs / "n1")
    report = tmp_path / "report.json"
    code, _ = yeet_env(src, dst, min_nodes=1, layers=fork_layers(tmp_path, 2), report=report)
    assert code == 0  # one of two nodes is enough with --min-nodes 1
    results = {r["rank"]: r for r in json.loads(report.read_text())}
    assert results[0]["ok"] and not results[1]["ok"]
    assert "not enough space" in results[1]["message"]
    assert (tmp_path / "0" / "env" / "blob").stat().st_size == 256 << 10
    assert (old / "OLD").read_text() == "previous copy\n" and sorted(p.name for p in old.iterdir()) == ["OLD"]
    assert sorted(p.name for p in (tiny_tmpfs / "n1").iterdir()) == ["env"]
    code_all, _ = yeet_env(src, dst, layers=fork_layers(tmp_path, 2), report=report)
    assert code_all == 1  # default: every node must succeed


def test_mid_write_failure_leaves_no_half_copy(tmp_path: Path, tiny_tmpfs: Path) -> None:
    # 300 files of 10 bytes: 3 KB by size (preflight passes in 64 KiB), but
    # tmpfs spends a page per file, so extraction runs out of space half way.
    src = tmp_path / "many-env"
    (src / "bin").mkdir(parents=True)
    for i in range(300):
        (src / f"f{i:03d}").write_text("0123456789")
    (tiny_tmpfs / "env").mkdir()
    (tiny_tmpfs / "env" / "OLD").write_text("x")
    (tmp_path / "1").symlink_to(tiny_tmpfs)
    report = tmp_path / "report.json"
    code, _ = yeet_env(src, f"{tmp_path}/{{rank}}/env", layers=fork_layers(tmp_path, 2), report=report)
    assert code == 1
    results = {r["rank"]: r for r in json.loads(report.read_text())}
    assert results[0]["ok"] and len(list((tmp_path / "0" / "env").glob("f*"))) == 300
    assert not results[1]["ok"] and "No space left" in results[1]["message"]
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["env"]
    assert sorted(p.name for p in (tiny_tmpfs / "env").iterdir()) == ["OLD"]


def test_bad_input(tmp_path: Path, venv: Path) -> None:
    with pytest.raises(EnvToolError, match="inside the source"):
        yeet_env(venv, venv / "copy", layers=fork_layers(tmp_path, 1))
    with pytest.raises(EnvToolError, match="source environment is inside the destination"):
        yeet_env(venv, venv.parent, layers=fork_layers(tmp_path, 1))
    with pytest.raises(EnvToolError, match="--min-nodes"):
        yeet_env(venv, tmp_path / "d", min_nodes=3, layers=fork_layers(tmp_path, 2))
    with pytest.raises(EnvToolError, match="not a directory"):
        yeet_env(tmp_path / "missing", tmp_path / "d")
    empty = tmp_path / "empty-hosts"
    empty.write_text("")
    with pytest.raises(EzpzError):
        yeet_env(venv, tmp_path / "d", layers=[("flags", {"hostfile": str(empty)})])


def test_fix_prefix_rewrites_only_what_points_at_the_old_path(tmp_path: Path) -> None:
    root = tmp_path / "env"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "activate").write_text("VIRTUAL_ENV='/old/env'\nPATH=/old/env/bin:$PATH\n")
    (root / "bin" / "tool").write_text("#!/old/env/bin/python\nprint('/old/env')\n")
    (root / "bin" / "blob").write_bytes(b"\x7fELF/old/env")
    (root / "pyvenv.cfg").write_text("command = python -m venv /old/env\n")
    assert fix_prefix(root, "/old/env", "/new/e") == 3
    assert (root / "bin" / "activate").read_text() == "VIRTUAL_ENV='/new/e'\nPATH=/new/e/bin:$PATH\n"
    assert (root / "bin" / "tool").read_text() == "#!/new/e/bin/python\nprint('/old/env')\n"
    assert (root / "bin" / "blob").read_bytes() == b"\x7fELF/old/env"
    assert (root / "pyvenv.cfg").read_text() == "command = python -m venv /new/e\n"


def test_cli_prints_the_activate_line(tmp_path: Path, venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ezpz.cli import main

    dst = tmp_path / "cli" / "env"
    argv = [
        "yeet-env",
        "--src",
        str(venv),
        "--dst",
        str(dst),
        "--hostfile",
        str(hostfile(tmp_path, 1)),
        "--launcher-flags",
        "-launcher fork",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"source {dst}/bin/activate"
    assert (dst / "bin" / "yeet-hello").is_file()
    assert main(["yeet-env", "--src", str(venv), "--dst", str(venv / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: the destination is inside the source environment")


def test_interrupt_mid_copy_leaves_no_staging_and_keeps_old_copies(tmp_path: Path) -> None:
    src = tmp_path / "big-env"
    (src / "bin").mkdir(parents=True)
    for i in range(12):  # 96 MiB: several seconds through the broadcast here
        (src / f"blob{i}").write_bytes(os.urandom(8 << 20))
    for rank in (0, 1):
        (tmp_path / str(rank) / "env").mkdir(parents=True)
        (tmp_path / str(rank) / "env" / "OLD").write_text("previous\n")
    argv = [
        sys.executable,
        "-m",
        "ezpz",
        "yeet-env",
        "--src",
        str(src),
        "--dst",
        f"{tmp_path}/{{rank}}/env",
        "--hostfile",
        str(hostfile(tmp_path, 2)),
        "--launcher-flags",
        "-launcher fork",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = lambda: list(tmp_path.glob("[01]/.env.yeet-*.tmp"))  # noqa: E731
    deadline = time.monotonic() + 60
    while len(staging()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert len(staging()) == 2, "the nodes never started staging"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert staging() == [], "a node left its staging directory behind"
    for rank in (0, 1):
        assert sorted(p.name for p in (tmp_path / str(rank)).iterdir()) == ["env"]
        # The copy was interrupted, not finished: the old environment is still there, alone.
        assert sorted(p.name for p in (tmp_path / str(rank) / "env").iterdir()) == ["OLD"]
