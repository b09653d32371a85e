"""The one module that touches the plugin manager and ``pm.hook``; everyone else calls its typed functions.

Built-in adapters (:mod:`ezpz.plugins.builtins`) are registered before external
plugins and cannot be replaced by them.  An external plugin
that fails to import is logged, skipped, and remembered for ``ezpz doctor``
(:func:`plugin_report`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, distributions
from pathlib import Path
from typing import Any

import pluggy

from ezpz.log import get_logger
from ezpz.plugins import hookspecs
from ezpz.plugins.builtins import BUILTINS, BuiltinAdapter
from ezpz.plugins.registry import SchedulerRegistry
from ezpz.schedulers.base import Scheduler

__all__ = [
    "PluginInfo",
    "doctor_checks",
    "get_plugin_manager",
    "plugin_report",
    "plugin_template_dirs",
    "scheduler_registry",
    "schedulers",
]


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


def _entry_points(group: str) -> Iterator[EntryPoint]:
    """The entry points of ``group``, in ``sys.path`` order, parsing only the distributions that declare it.

    ``importlib.metadata.entry_points(group=...)`` parses every installed
    distribution's ``entry_points.txt`` (5 ms of each launch in a venv of
    120); a distribution whose file does not name the group is skipped
    after one read.  A name found twice is the caller's to skip.
    """
    header = f"[{group}]"
    for dist in distributions():
        text = dist.read_text("entry_points.txt")
        if text and header in text:
            yield from dist.entry_points.select(group=group)


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, built-ins first, then entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    # pluggy calls the last registered first; reversed, pbs, slurm, local register in that order.
    for name, cls in reversed(BUILTINS.items()):
        pm.register(BuiltinAdapter(cls), name=name)
    log = get_logger("ezpz.plugins")
    for ep in _entry_points(hookspecs.PROJECT):
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


def scheduler_registry() -> SchedulerRegistry:
    """Return a registry filled by the built-in adapters, then by the plugins' (which cannot replace them)."""
    pm = get_plugin_manager()
    plugins = pm.list_name_plugin()
    builtin = [plugin for name, plugin in plugins if name in BUILTINS]
    external = [plugin for name, plugin in plugins if name not in BUILTINS]
    registry = SchedulerRegistry()
    pm.subset_hook_caller("ezpz_register_schedulers", remove_plugins=external)(registry=registry)
    registry.close_builtins()
    pm.subset_hook_caller("ezpz_register_schedulers", remove_plugins=builtin)(registry=registry)
    return registry


def schedulers() -> dict[str, Scheduler]:
    """Return ``{name: Scheduler instance}``, built-ins first."""
    return scheduler_registry().instances()


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
    order = list(BUILTINS)
    named = sorted(pm.list_name_plugin(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    for name, plugin in named:
        if plugin is None:
            continue
        hooks = tuple(h.name for h in pm.get_hookcallers(plugin) or ())
        source = "builtin" if name in BUILTINS else name
        infos.append(PluginInfo(name, source, _versions.get(name), hooks))
    return infos + list(_failures)
