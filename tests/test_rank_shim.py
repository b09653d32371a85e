"""The per-rank shell shim (``ezpz/launch/rank.sh``) and its reader (``ezpz.launch.supervise``).

The shim runs for real under ``sh`` with hand-made launcher environments; it
must agree with :func:`ezpz.ranks.rank_info` (the runtime's Python reading of
the same variables) on every environment, stale outer ``RANK`` included.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ezpz.errors import DistError, SpecError
from ezpz.launch.supervise import RANK_SHIM, RECORD, Session, Supervisor, status_text
from ezpz.model.console import parse_ranks
from ezpz.model.plan import Plan
from ezpz.ranks import device_env, rank_info
from ezpz.schedulers.dialects import HYDRA_PATTERN

SHIM = RANK_SHIM
SHOWN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def shim(environ: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **environ}
    return subprocess.run(["sh", str(SHIM), *command], capture_output=True, text=True, env=env, timeout=30)


def shim_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The variables the shim exports, or None when it refused the environment."""
    done = shim(environ, "env")
    if done.returncode == 2:
        assert done.stderr.startswith("error: "), done.stderr
        return None
    assert done.returncode == 0, done.stderr
    pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return dict(pairs)


def python_env(environ: dict[str, str]) -> dict[str, str] | None:
    """What rank_info reads from the same environment once stale torchrun variables are gone."""
    try:
        info = rank_info({k: v for k, v in environ.items() if k not in TORCHRUN})
    except DistError:
        return None
    return {
        "RANK": str(info.rank),
        "WORLD_SIZE": str(info.world_size),
        "LOCAL_RANK": str(info.local_rank),
        "LOCAL_WORLD_SIZE": str(info.local_world_size),
    }


CASES = {
    "nothing": {},
    "hydra": {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"},
    "pals": {"PMI_RANK": "13", "PMI_SIZE": "24", "PALS_LOCAL_RANKID": "1", "PALS_LOCAL_SIZE": "12"},
    "openmpi": {
        "OMPI_COMM_WORLD_RANK": "5",
        "OMPI_COMM_WORLD_SIZE": "8",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
    },
    "srun": {"SLURM_PROCID": "6", "SLURM_NTASKS": "8", "SLURM_LOCALID": "2", "SLURM_NTASKS_PER_NODE": "4(x2)"},
    "stale outer RANK": {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "9", "PMI_RANK": "1", "PMI_SIZE": "2"},
    "stale RANK only": {"RANK": "5", "WORLD_SIZE": "8"},
    "blank and padded": {"PMI_RANK": " ", "SLURM_PROCID": " 2 ", "SLURM_NTASKS": "03"},
    "local size above world": {"PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALNRANKS": "12"},
    "ezpz ppn only": {"PMI_RANK": "1", "PMI_SIZE": "4", "EZPZ_LOCAL_WORLD_SIZE": "2", "MPI_LOCALRANKID": "1"},
    "rank outside world": {"PMI_RANK": "4", "PMI_SIZE": "4"},
    "not an integer": {"PMI_RANK": "one", "PMI_SIZE": "4"},
    "local rank outside node": {"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "2"},
    "world of zero": {"PMI_SIZE": "0"},
}


@pytest.mark.parametrize("environ", CASES.values(), ids=CASES)
def test_shim_and_rank_info_agree(environ):
    exported = shim_env(environ)
    expected = python_env(environ)
    if expected is None:
        assert exported is None, "the shim accepted what rank_info refuses"
        return
    assert exported is not None, "the shim refused what rank_info accepts"
    assert {k: exported[k] for k in SHOWN} == expected


VALUES = st.one_of(st.sampled_from(["", " ", "0", "1", "2", "3", "4", "7", "8", "16", "007", "x", "2(x3)", "-1"]))
VARIABLES = st.sampled_from(
    [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "PMI_RANK",
        "PMI_SIZE",
        "PALS_RANKID",
        "PALS_LOCAL_RANKID",
        "PALS_LOCAL_SIZE",
        "MPI_LOCALRANKID",
        "MPI_LOCALNRANKS",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
        "SLURM_NTASKS_PER_NODE",
        "EZPZ_LOCAL_WORLD_SIZE",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(VARIABLES, VALUES, max_size=6))
def test_shim_and_rank_info_agree_on_any_launcher_environment(environ):
    # "-1" is an integer to Python and not to the shell; both refuse it as a rank.
    exported = shim_env(environ)
    expected = python_env(environ)
    if expected is None or exported is None:
        assert expected is None and exported is None, (environ, exported, expected)
        return
    assert {k: exported[k] for k in SHOWN} == expected


def test_shim_exports_torchrun_agent_variables_and_defaults():
    exported = shim_env(
        {
            "PMI_RANK": "5",
            "PMI_SIZE": "8",
            "MPI_LOCALRANKID": "1",
            "MPI_LOCALNRANKS": "4",
            "EZPZ_LAUNCH_ID": "job-1",
            "EZPZ_ATTEMPT": "2",
            "EZPZ_OMP_NUM_THREADS": "3",
            "EZPZ_DEVICE_VAR": "ZE_AFFINITY_MASK",
            "EZPZ_DEVICE_MAP": "0.0 0.1 1.0 1.1",
        }
    )
    assert exported is not None
    assert {k: exported.get(k) for k in ("GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE")} == {
        "GROUP_RANK": "1",
        "GROUP_WORLD_SIZE": "2",
        "ROLE_RANK": "5",
        "ROLE_WORLD_SIZE": "8",
    }
    assert exported["ROLE_NAME"] == "default"
    assert exported["TORCHELASTIC_RESTART_COUNT"] == "2"
    assert exported["OMP_NUM_THREADS"] == "3"
    assert exported["ZE_AFFINITY_MASK"] == "0.1"
    assert exported["PYTHONUNBUFFERED"] == "1" and exported["PYTHONFAULTHANDLER"] == "1"
    assert exported["PYTHONPATH"].split(os.pathsep)[0] == str(SHIM.parent / "_hook")


def test_shim_leaves_what_the_user_set():
    exported = shim_env(
        {
            "OMP_NUM_THREADS": "7",
            "EZPZ_OMP_NUM_THREADS": "3",
            "PYTHONUNBUFFERED": "",
            "CUDA_VISIBLE_DEVICES": "5",
            "EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES",
            "EZPZ_DEVICE_MAP": "0 1",
            "PYTHONPATH": "/site/lib",
            "SLURM_NODEID": "3",
        }
    )
    assert exported is not None
    assert exported["OMP_NUM_THREADS"] == "7"
    assert exported["PYTHONUNBUFFERED"] == ""
    assert exported["CUDA_VISIBLE_DEVICES"] == "5"
    assert exported["PYTHONPATH"].endswith(":/site/lib")
    assert exported["GROUP_RANK"] == "3"


def test_shim_reports_start_and_exit_and_keeps_the_exit_status(tmp_path):
    # The shim's own names (_st, ...) may be in the environment: they must not leak in.
    done = shim({"PMI_RANK": "1", "PMI_SIZE": "2", "_st": "127"}, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == "out\n"
    lines = done.stderr.split("\n")[:-1]
    host = os.uname().nodename
    assert lines == [f"\x1eezpz start 1 0 {host} -", "err", f"\x1eezpz exit 1 3 {host}"]
    killed = shim({}, "sh", "-c", "kill -9 $$")
    assert killed.returncode == 137
    # The shell's own "Killed" notice is not added to the rank's stderr.
    assert killed.stderr.split("\n")[1:-1] == [f"\x1eezpz exit 0 137 {host}"]


def test_shim_says_once_when_the_command_cannot_start(tmp_path):
    done = shim({"PMI_RANK": "0", "PMI_SIZE": "1"}, "pyhton", "x.py")
    assert done.returncode == 127
    host = os.uname().nodename
    assert done.stderr == f"\x1eezpz noexec 0 0 {host} 127 pyhton\n"
    script = tmp_path / "x.sh"
    script.write_text("echo hi\n")
    done = shim({}, str(script))
    assert done.returncode == 126
    assert done.stderr == f"\x1eezpz noexec 0 0 {host} 126 {script}\n"


def test_the_hook_dumps_stacks_on_the_dump_signal_and_keeps_running(tmp_path):
    code = (
        "import os, signal, time\n"
        "def waiting_here():\n"
        "    os.kill(os.getpid(), signal.SIGALRM)\n"
        "    time.sleep(0.2)\n"
        "waiting_here()\n"
        "print('still running')\n"
    )
    done = shim({"EZPZ_DUMP_SIGNAL": "ALRM"}, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "still running\n"
    assert "line 3 in waiting_here" in done.stderr


def test_the_hook_still_runs_the_sitecustomize_it_shadows(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.SITE_RAN = True\n")
    done = shim({"PYTHONPATH": str(tmp_path)}, sys.executable, "-c", "import builtins; print(builtins.SITE_RAN)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n"


def supervisor(launcher: str, np: int = 2, hosts: tuple[str, ...] = ("h",), **kw) -> tuple[Supervisor, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    sup = Supervisor(launcher, np, hosts, np, None, kw.get("ranks"), kw.get("tag", True), out, err)
    return sup, out


def hydra_stream(chunks: list[tuple[int, bytes]]) -> bytes:
    """What hydra writes for these (rank, chunk) writes: a label at each chunk and after each inner newline."""
    data = b""
    for rank, chunk in chunks:
        label = HYDRA_PATTERN.replace("%r", str(rank)).encode()
        body = chunk[:-1].replace(b"\n", b"\n" + label) + chunk[-1:] if chunk else b""
        data += label + body
    return data


LINES = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.tuples(LINES, LINES), st.data())
def test_hydra_lines_come_back_whole_however_chunks_and_reads_fall(lines, data):
    # Each rank writes its lines in pieces cut anywhere; hydra forwards the
    # pieces of the two ranks interleaved, labelling each; our reads of
    # hydra's pipe are cut anywhere too.
    queues: list[list[bytes]] = []
    for rank_lines in lines:
        blob = b"".join(rank_lines)
        cut = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=4)))
        queues.append([blob[a:b] for a, b in zip([0, *cut], [*cut, len(blob)], strict=True) if blob[a:b]])
    chunks: list[tuple[int, bytes]] = []
    while any(queues):
        rank = data.draw(st.sampled_from([r for r in (0, 1) if queues[r]]))
        chunks.append((rank, queues[rank].pop(0)))
    stream = hydra_stream(chunks)
    reads = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    sup, out = supervisor("hydra", tag=True)
    for a, b in zip([0, *reads], [*reads, len(stream)], strict=True):
        sup.feed(0, stream[a:b])
    sup.close()
    got: dict[int, list[bytes]] = {0: [], 1: []}
    for line in out.getvalue().split(b"\n")[:-1]:
        got[int(line[1:2])].append(line[4:])
    for rank in (0, 1):
        assert got[rank] == [line[:-1] for line in lines[rank]]


def test_records_are_kept_out_of_console_and_logs(tmp_path):
    sup, out = supervisor("srun", np=2, hosts=("n1", "n2"))
    sup.feed(1, b"0: " + RECORD + b"start 0 0 n1 7.0\n1: " + RECORD + b"start 1 0 n2 7.0\n")
    sup.feed(0, b"1: hello\n0: world\nsrun: launcher line\n")
    sup.feed(1, b"1: " + RECORD + b"exit 1 1 n2\n")
    sup.close()
    assert out.getvalue() == b"[1@n2] hello\n[0@n1] world\nsrun: launcher line\n"
    assert sup.first is not None and (sup.first.rank, sup.first.host, sup.first.code) == (1, "n2", 1)
    assert sup.steps() == {"7.0"}


def test_console_filter_and_no_tag():
    sup, out = supervisor("openmpi", np=4, ranks=frozenset({2}), tag=False)
    sup.feed(0, b"[1,0]<stdout>: zero\n[1,2]<stdout>: two\n[1,3]<stdout>: three\n")
    sup.close()
    assert out.getvalue() == b"two\n"


@pytest.mark.parametrize(
    ("text", "np", "want"),
    [("all", 4, None), ("0", 4, {0}), ("0,2-3", 4, {0, 2, 3}), (" 1 , 3 ", 4, {1, 3}), ("ALL", 1, None)],
)
def test_parse_ranks(text, np, want):
    assert parse_ranks(text, np) == (None if want is None else frozenset(want))


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "1,,2", "-1", "0,4"])
def test_parse_ranks_refuses(text):
    with pytest.raises(SpecError):
        parse_ranks(text, 4)


def test_status_text():
    assert status_text(1) == "exit 1"
    assert status_text(137) == "SIGKILL (exit 137)"
    assert status_text(255) == "exit 255"


def _plan(np: int, **fields: object) -> Plan:
    return Plan(
        argv=("mpiexec",), env={}, np=np, ppn=np, nhosts=1, hosts=("h",), scheduler="local", launcher="hydra", **fields
    )  # type: ignore[arg-type]


def test_console_default_is_every_rank_up_to_64_then_rank_0(tmp_path):
    err = io.BytesIO()
    small = Session(_plan(64, run_dir=str(tmp_path / "a")), {}, io.BytesIO(), err)
    assert small.console is None
    big = Session(_plan(10_000, run_dir=str(tmp_path / "b")), {}, io.BytesIO(), err)
    assert big.console == frozenset({0})
    assert b"console shows rank 0 of 10000" in err.getvalue()
    chosen = Session(_plan(10_000, run_dir=str(tmp_path / "c"), console_ranks="all"), {}, io.BytesIO(), err)
    assert chosen.console is None


MAPS = st.sampled_from(["0 1 2 3", "0.0 0.1 1.0 1.1", "0,1 2,3", "3 2", "0", " "])
SEEN = st.sampled_from([None, "", "4,5,6,7", "4,5", "3,5", "0.1,0.2", " , 7", "x,y"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MAPS, SEEN, st.integers(0, 3))
def test_shim_device_mask_agrees_with_device_env(device_map, seen, local_rank):
    environ = {
        "PMI_RANK": str(local_rank),
        "PMI_SIZE": "4",
        "MPI_LOCALRANKID": str(local_rank),
        "MPI_LOCALNRANKS": "4",
        "EZPZ_DEVICE_VAR": "CUDA_VISIBLE_DEVICES",
        "EZPZ_DEVICE_MAP": device_map,
        **({} if seen is None else {"CUDA_VISIBLE_DEVICES": seen}),
    }
    exported = shim_env(environ)
    try:
        expected = device_env(environ, local_rank)
    except DistError:
        assert exported is None, (environ, exported)
        return
    assert exported is not None, environ
    want = expected.get("CUDA_VISIBLE_DEVICES", seen)
    assert exported.get("CUDA_VISIBLE_DEVICES") == want
