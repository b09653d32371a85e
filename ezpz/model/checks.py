"""The doctor's check types: what a check gets, what it returns, and the check itself.

Values only, so that the plugin hookspecs (``ezpz_doctor_checks``) and plugins
can name them without importing the doctor.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "CheckResult", "DoctorContext", "Status"]

#: A check's verdict.
Status = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's name (``mpi``, ``scheduler``, ...).
        status: ``ok``, ``warning`` or ``error``.
        message: one line saying what was found.
        remedy: one line saying what to do; empty when nothing is needed.
        details: machine-readable facts for ``--json``.

    """

    name: str
    status: Status
    message: str
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorContext:
    """What every check may look at.

    Attributes:
        environ: environment variables of the machine under test (PATH included).
        deep: run slower, more thorough probes (a 2-rank MPI job).
        layers: launch layers (template, config, flags) whose fit to this
            allocation is checked; empty when none were given.
        python_bin: where ``ezpz launch`` also looks for a launcher missing
            from PATH (the directory of this interpreter, where ``pip install
            mpich`` puts ``mpiexec``); ``None`` to look on PATH only.
    """

    environ: Mapping[str, str]
    deep: bool = False
    layers: Sequence[tuple[str, Mapping[str, Any]]] = ()
    python_bin: str | None = os.path.dirname(sys.executable)


@dataclass(frozen=True)
class Check:
    """A named diagnostic; plugins return these from ``ezpz_doctor_checks``.

    Attributes:
        name: short name shown in the table.
        run: ``run(ctx)`` returns one :class:`CheckResult` or a list of them.

    """

    name: str
    run: Callable[[DoctorContext], CheckResult | list[CheckResult]]
