"""``ezpz tar-env``: create, reuse, overwrite, failure and interrupt paths, for real."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from ezpz.envs.discover import active_env, env_at
from ezpz.envs.pack import tar_env
from ezpz.errors import EnvToolError


def make_env(root: Path, name: str = "myenv", payload: bytes = b"x = 1\n") -> Path:
    """A small venv-shaped directory: pyvenv.cfg, bin/activate, a package, a symlink."""
    env = root / name
    site = env / "lib" / "python3.11" / "site-packages" / "pkg"
    site.mkdir(parents=True)
    (env / "bin").mkdir()
    (env / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11\n")
    (env / "bin" / "activate").write_text(f"VIRTUAL_ENV='{env}'\nexport VIRTUAL_ENV\n")
    (env / "bin" / "python").symlink_to(sys.executable)
    (site / "__init__.py").write_bytes(payload)
    return env


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_active_env_inference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = make_env(tmp_path, ".venv")
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    env = active_env()
    assert (env.path, env.kind, env.name) == (venv, "venv", f"{tmp_path.name}-venv")

    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.5.0\n")
    assert active_env().kind == "uv"

    conda = tmp_path / "myconda"
    (conda / "conda-meta").mkdir(parents=True)
    monkeypatch.delenv("VIRTUAL_ENV")
    monkeypatch.setenv("CONDA_PREFIX", str(conda))
    assert active_env() == env_at(conda)
    assert active_env().kind == "conda" and active_env().name == "myconda"

    monkeypatch.delenv("CONDA_PREFIX")
    with pytest.raises(EnvToolError, match="no active Python environment"):
        active_env(prefix=sys.base_prefix)
    with pytest.raises(EnvToolError, match="not a directory"):
        env_at(tmp_path / "missing")


def test_create_reuse_overwrite(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    seen: list[tuple[int, int]] = []
    made = tar_env(env, progress=lambda done, total: seen.append((done, total)))
    assert made.path == tmp_path / "myenv.tar.gz" and not made.reused
    assert seen and seen[-1][0] == seen[-1][1] > 0
    with tarfile.open(made.path) as tar:
        names = set(tar.getnames())
        link = tar.getmember("myenv/bin/python")
        body = tar.extractfile("myenv/lib/python3.11/site-packages/pkg/__init__.py")
        assert body is not None and body.read() == b"x = 1\n"
    assert {"myenv", "myenv/pyvenv.cfg", "myenv/bin/activate", "myenv/bin/python"} <= names
    assert link.issym() and link.linkname == sys.executable
    assert leftovers(tmp_path) == []

    (env / "pyvenv.cfg").write_text("changed\n")
    before = made.path.stat().st_mtime_ns
    again = tar_env(env)
    assert again.reused and again.files == 0 and made.path.stat().st_mtime_ns == before

    fresh = tar_env(env, overwrite=True)
    assert not fresh.reused
    with tarfile.open(fresh.path) as tar:
        cfg = tar.extractfile("myenv/pyvenv.cfg")
        assert cfg is not None and cfg.read() == b"changed\n"
    assert leftovers(tmp_path) == []


def test_bad_destinations(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    with pytest.raises(EnvToolError, match="inside the environment"):
        tar_env(env, env / "self.tar.gz")
    with pytest.raises(EnvToolError, match="directory does not exist"):
        tar_env(env, tmp_path / "nope" / "x.tar.gz")


def _drop_file_read_override() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so that root obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # linux/capability.h: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _pack_script(src: Path, out: Path, level: int = 1) -> list[str]:
    code = (
        "import sys\nfrom ezpz.envs.pack import tar_env\nfrom ezpz.errors import EzpzError\n"
        f"try:\n    tar_env({str(src)!r}, {str(out)!r}, overwrite=True, level={level})\n"
        "except EzpzError as exc:\n    print(exc.line(), file=sys.stderr)\n    sys.exit(3)\n"
    )
    return [sys.executable, "-c", code]


def test_unreadable_file_fails_cleanly(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    secret = env / "lib" / "secret.py"
    secret.write_text("no\n")
    secret.chmod(0)
    out = tmp_path / "myenv.tar.gz"
    # Root reads any file; under root the packer runs without the two capabilities that allow it.
    demote = _drop_file_read_override if os.geteuid() == 0 else None
    proc = subprocess.run(_pack_script(env, out), capture_output=True, text=True, preexec_fn=demote, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "cannot read a file of the environment" in proc.stderr and str(secret) in proc.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_no_space_left_fails_cleanly(tmp_path: Path) -> None:
    env = make_env(tmp_path, payload=os.urandom(2 << 20))
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root) to run out of space for real")
    try:
        (small / "myenv.tar.gz").write_bytes(b"previous")
        with pytest.raises(EnvToolError, match="cannot write the tarball: No space left"):
            tar_env(env, small / "myenv.tar.gz", overwrite=True)
        assert sorted(p.name for p in small.iterdir()) == ["myenv.tar.gz"]
        assert (small / "myenv.tar.gz").read_bytes() == b"previous"
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_keyboard_interrupt_keeps_previous_tarball(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    out = tmp_path / "myenv.tar.gz"
    out.write_bytes(b"previous")

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tar_env(env, out, overwrite=True, progress=interrupt)
    assert out.read_bytes() == b"previous" and leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_pack_leaves_nothing(tmp_path: Path, signum: int, code: int) -> None:
    env = make_env(tmp_path)
    for i in range(8):  # ~40 MB of incompressible data: seconds at gzip level 9
        (env / f"blob{i}.bin").write_bytes(os.urandom(5 << 20))
    out = tmp_path / "myenv.tar.gz"
    argv = [
        sys.executable,
        "-m",
        "ezpz",
        "tar-env",
        "--src",
        str(env),
        "--out",
        str(out),
        "--level",
        "9",
    ]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not leftovers(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert leftovers(tmp_path), "the packer never created its temporary file"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_tar_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ezpz.cli import main

    env = make_env(tmp_path)
    out = tmp_path / "e.tgz"
    assert main(["tar-env", "--src", str(env), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and tarfile.is_tarfile(out)
    assert main(["tar-env", "--src", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: environment source is not a directory") and err.count("\n") == 1
