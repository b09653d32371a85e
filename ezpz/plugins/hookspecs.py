"""The hooks a plugin may implement.

A plugin is a module (or object) registered under the ``ezpz`` entry-point
group, e.g. in its ``pyproject.toml``::

    [project.entry-points.ezpz]
    mysite = "ezpz_mysite.plugin"

and implementing any of the hooks below with ``@ezpz.plugins.hookspecs.hookimpl``.
The built-in schedulers (``pbs``, ``slurm``, ``local``) are plugins too and are
registered first; a plugin can add to them but never replace them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ezpz.model.checks import Check
    from ezpz.plugins.registry import SchedulerRegistry

__all__ = ["hookimpl", "hookspec"]

PROJECT = "ezpz"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ezpz_register_schedulers(registry: SchedulerRegistry) -> None:
    """Add scheduler adapters.

    Call ``registry.add(MyScheduler)`` for each :class:`~ezpz.schedulers.base.Scheduler`
    subclass.  A class whose ``name`` is already taken by a built-in adapter is
    refused and reported by ``ezpz doctor``.

    Args:
        registry: the registry to add to.
    """


@hookspec
def ezpz_template_dirs() -> list[Path]:
    """Return directories holding extra launch templates (``*.toml``).

    Templates found there are listed by ``ezpz templates list`` and usable with
    ``--template NAME``; a name already used by a built-in template is ignored.

    Returns:
        Directories to search, in order.
    """
    ...


@hookspec
def ezpz_doctor_checks() -> list[Check]:
    """Return extra diagnostics for ``ezpz doctor``.

    Returns:
        A list of :class:`ezpz.model.checks.Check` objects; each is run by ``ezpz doctor``
        and shown with the built-in checks.
    """
    ...
