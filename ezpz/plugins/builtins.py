"""The built-in scheduler adapters, registered through the same hook as any plugin's."""

from __future__ import annotations

from ezpz.plugins.hookspecs import hookimpl
from ezpz.plugins.registry import SchedulerRegistry
from ezpz.schedulers.base import Scheduler
from ezpz.schedulers.local import Local
from ezpz.schedulers.pbs import PBS
from ezpz.schedulers.slurm import Slurm

__all__ = ["BUILTINS", "BuiltinAdapter"]


class BuiltinAdapter:
    """A plugin object that registers one built-in adapter class."""

    def __init__(self, cls: type[Scheduler]) -> None:
        """Wrap ``cls``."""
        self.cls = cls

    @hookimpl
    def ezpz_register_schedulers(self, registry: SchedulerRegistry) -> None:
        """Register the wrapped adapter."""
        registry.add(self.cls)


#: Plugin name -> built-in adapter, in the order ``schedulers()`` lists them.
BUILTINS: dict[str, type[Scheduler]] = {
    "ezpz.schedulers.pbs": PBS,
    "ezpz.schedulers.slurm": Slurm,
    "ezpz.schedulers.local": Local,
}
