"""The registry of scheduler adapters, and :func:`pick`: the one rule that chooses among them."""

from __future__ import annotations

from collections.abc import Mapping

from ezpz.errors import SchedulerError, closest
from ezpz.schedulers.base import Scheduler

__all__ = ["SchedulerRegistry", "pick"]


class SchedulerRegistry:
    """Scheduler classes by name; built-ins cannot be replaced by plugins."""

    def __init__(self) -> None:
        """Start empty; :func:`ezpz.plugins.manager.scheduler_registry` fills it."""
        self._classes: dict[str, type[Scheduler]] = {}
        self._builtin: frozenset[str] = frozenset()
        #: ``module.Class`` of every plugin adapter refused because a built-in holds its name.
        self.refused: list[str] = []

    def add(self, cls: type[Scheduler]) -> None:
        """Register ``cls`` under ``cls.name``; a name a built-in holds is refused (and listed in :attr:`refused`)."""
        if not cls.name:
            raise SchedulerError("scheduler class has no name", cls.__qualname__, "set the class attribute name")
        if cls.name in self._builtin:
            self.refused.append(f"{cls.__module__}.{cls.__qualname__}")
            return
        self._classes[cls.name] = cls

    def close_builtins(self) -> None:
        """Mark every adapter registered so far as built-in: later ones cannot replace it."""
        self._builtin = frozenset(self._classes)

    def instances(self) -> dict[str, Scheduler]:
        """Return one instance of every registered adapter."""
        return {name: cls() for name, cls in self._classes.items()}


def pick(adapters: Mapping[str, Scheduler], environ: Mapping[str, str], name: str | None) -> tuple[Scheduler, str]:
    """Choose the adapter named ``name``, else the one with the highest affinity.

    Returns the adapter and why it was chosen.
    """
    if name is not None:
        if name not in adapters:
            raise SchedulerError("unknown scheduler", name, closest(name, adapters))
        return adapters[name], "chosen"
    scores = {n: a.affinity(environ) for n, a in adapters.items()}
    best = max(scores.values())
    top = [n for n, s in scores.items() if s == best]
    if best >= 2 and len(top) > 1:
        raise SchedulerError("more than one scheduler job detected", ", ".join(top), "pass --scheduler NAME")
    if best < 0:
        raise SchedulerError("no scheduler adapter is active", None, "pass --scheduler local")
    chosen = top[0]
    return adapters[chosen], f"detected (affinity {best})"
