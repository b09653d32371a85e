"""ezpz.schedulers.dialects: each launcher family's argv from Parts, the registry, the errors (pure, in-process).

The golden cases (tests/test_golden.py) render the same through whole launches;
these pin the branches one at a time.
"""

from __future__ import annotations

import pytest

from ezpz.errors import SpecError
from ezpz.model.allocation import Layout
from ezpz.schedulers import dialects
from ezpz.schedulers.dialects import DIALECTS, Dialect, Parts, dialect, install_hint, register


def parts(np: int = 4, ppn: int = 2, nhosts: int = 2, accelerators: int = 0, **kw: object) -> Parts:
    lay = Layout(np=np, ppn=ppn, nhosts=nhosts, hosts=tuple(f"n{i}" for i in range(nhosts)), accelerators=accelerators)
    fields: dict = {"hostfile": None, "subset": False, "cpu_bind": None, "flags": [], "env": {}, "tail": ["x"]}
    return Parts(lay=lay, **{**fields, **kw})  # type: ignore[arg-type]


def test_hydra_gives_ppn_on_more_than_one_host_or_with_a_hostfile() -> None:
    assert dialects.hydra_argv(parts(np=2, ppn=2, nhosts=1)) == ["mpiexec", "-n", "2", "x"]
    assert dialects.hydra_argv(parts(np=4, ppn=2, nhosts=2)) == ["mpiexec", "-n", "4", "-ppn", "2", "x"]
    assert dialects.hydra_argv(parts(np=2, ppn=2, nhosts=1, hostfile="hf", cpu_bind="core")) == [
        "mpiexec", "-n", "2", "-ppn", "2", "--hostfile", "hf", "-bind-to", "core", "x",
    ]  # fmt: skip


def test_openmpi_binds_and_forwards_path_and_the_plan_env_once() -> None:
    argv = dialects.openmpi_argv(parts(cpu_bind="socket", flags=["-x", "A", "--foo"], env={"A": "1", "B": "2"}))
    assert argv == [
        "mpirun", "-n", "4", "--map-by", "ppr:2:node", "--bind-to", "socket",
        "-x", "A", "--foo", "-x", "PATH", "-x", "B", "x",
    ]  # fmt: skip
    # a variable named by the last two flags is not named twice; a trailing "-x" names nothing
    assert dialects.openmpi_argv(parts(flags=["-x", "A"], env={"A": "1"}))[-5:] == ["-x", "A", "-x", "PATH", "x"]
    # a trailing "-x" names nothing
    assert dialects.openmpi_argv(parts(flags=["-x"], env={"A": "1"}))[-6:] == ["-x", "-x", "PATH", "-x", "A", "x"]


@pytest.mark.parametrize(("launcher", "name"), [("hydra", "MPICH hydra"), ("openmpi", "Open MPI")])
@pytest.mark.parametrize("bind", ["depth", "list:0-3:4-7"])
def test_pals_cpu_binding_is_refused_by_hydra_and_open_mpi(launcher: str, name: str, bind: str) -> None:
    with pytest.raises(SpecError) as info:
        DIALECTS[launcher].argv(parts(cpu_bind=bind))
    assert info.value.line() == (
        f"cpu binding is PALS syntax, which {name} does not take (given {bind!r}); "
        "use core, socket, numa or none (check CPU_BIND / EZPZ_CPU_BIND in your environment)"
    )


def test_srun_buffering_gpus_and_nodelist() -> None:
    assert dialects.srun_argv(parts(accelerators=0)) == ["srun", "-u", "-N2", "-n4", "--ntasks-per-node=2", "x"]
    assert dialects.srun_argv(parts(accelerators=1, supervise=True, subset=True, cpu_bind="cores")) == [
        "srun", "-N2", "-n4", "--ntasks-per-node=2", "--gpus-per-node=1", "--nodelist=n[0-1]", "--cpu-bind=cores", "x",
    ]  # fmt: skip


def test_unknown_launcher_names_its_layer() -> None:
    with pytest.raises(SpecError) as info:
        dialect("mpich3", "config:ezpz.toml")
    assert info.value.line() == (
        "unknown launcher (from config:ezpz.toml) (given 'mpich3'); valid: hydra, openmpi, pals, srun"
    )
    with pytest.raises(SpecError) as info:
        dialect("hydr")
    assert (
        info.value.line() == "unknown launcher (given 'hydr'); valid: hydra, openmpi, pals, srun; did you mean 'hydra'?"
    )


def test_install_hint_is_the_first_dialects_for_that_binary() -> None:
    assert install_hint("mpiexec") == "install an MPI: pip install mpich (or load your site's MPI module)"
    assert install_hint("srun") == "run inside a Slurm allocation (salloc/sbatch) on a Slurm cluster"
    assert install_hint("aprun") == "install it or put it on PATH"


def test_a_plugin_dialect_is_added_but_never_replaces_a_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialects, "DIALECTS", dict(DIALECTS))
    mine = Dialect("aprun", "aprun", "load the cray module", lambda p: ["aprun", *p.tail])
    register(mine)
    assert dialects.DIALECTS["aprun"] is mine
    assert install_hint("aprun") == "load the cray module"
    with pytest.raises(SpecError) as info:
        register(Dialect("hydra", "mine", "", lambda p: []))
    assert (
        info.value.line()
        == "a built-in dialect has this name (given 'hydra'); choose another name for the plugin's dialect"
    )
    assert dialects.DIALECTS["hydra"] is DIALECTS["hydra"]
