"""The one module that touches ``pm.hook``; everyone else calls its typed functions.

Built-in adapters are registered before external plugins.  An external plugin
that fails to import is logged, skipped, and remembered for ``ezpz doctor``
(:func:`plugin_report`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from ezpz.log import get_logger
from ezpz.plugins import hookspecs

__all__ = ["PluginInfo", "doctor_checks", "get_plugin_manager", "plugin_report", "plugin_template_dirs", "schedulers"]

BUILTINS = ("ezpz.schedulers.pbs", "ezpz.schedulers.slurm", "ezpz.schedulers.local")


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``ezpz doctor`` shows it.

    Attributes:
        name: entry-point or module name.
        source: ``builtin`` or the entry point's value.
        version: the distribution version, when known.
        hooks: hooks it implements.
        error: why it failed to load, or ``None``.
    """

    name: str
    source: str
    version: str | None
    hooks: tuple[str, ...]
    error: str | None = None


_failures: list[PluginInfo] = []
_versions: dict[str, str] = {}


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, built-ins first, then entry points."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for module in BUILTINS:
        pm.register(importlib.import_module(module), name=module)
    log = get_logger("ezpz.plugins")
    for ep in entry_points(group=hookspecs.PROJECT):
        if pm.has_plugin(ep.name) or ep.name in BUILTINS:
            continue
        if ep.dist is not None:
            _versions[ep.name] = ep.dist.version
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not break ezpz
            _failures.append(PluginInfo(ep.name, ep.value, _versions.get(ep.name), (), f"{type(exc).__name__}: {exc}"))
            log.warning("plugin %s failed to load and was skipped: %s", ep.name, exc)
    return pm


def schedulers() -> dict[str, Any]:
    """Return ``{name: Scheduler instance}``, built-ins first."""
    from ezpz.schedulers.base import SchedulerRegistry

    registry = SchedulerRegistry()
    pm = get_plugin_manager()
    for impl in pm.hook.ezpz_register_schedulers.get_hookimpls():
        registry.builtin = impl.plugin_name in BUILTINS
        impl.function(registry=registry)
    return registry.instances()


def plugin_template_dirs() -> list[Path]:
    """Return template directories contributed by plugins."""
    dirs: list[Path] = []
    for result in get_plugin_manager().hook.ezpz_template_dirs():
        dirs.extend(Path(d) for d in result or ())
    return dirs


def doctor_checks() -> list[Any]:
    """Return the extra doctor checks contributed by plugins."""
    checks: list[Any] = []
    for result in get_plugin_manager().hook.ezpz_doctor_checks():
        checks.extend(result or ())
    return checks


def plugin_report() -> list[PluginInfo]:
    """Every plugin: loaded ones with their hooks, and those that failed to load."""
    pm = get_plugin_manager()
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(h.name for h in pm.get_hookcallers(plugin) or ())
        source = "builtin" if name in BUILTINS else name
        infos.append(PluginInfo(name, source, _versions.get(name), hooks))
    return infos + list(_failures)
