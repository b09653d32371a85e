"""The registry of scheduler adapters, and :func:`pick`: the one rule that chooses among them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping

from ezpz.errors import SchedulerError, closest
from ezpz.model.template import Template
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


def pick(
    adapters: Mapping[str, Scheduler],
    environ: Mapping[str, str],
    name: str | None,
    *,
    template: Template | None = None,
    batch: bool = False,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[Scheduler, str]:
    """Choose the scheduler adapter: the one rule for launch, submit and doctor.

    Order: the adapter ``name`` names (a flag, ``EZPZ_SCHEDULER`` or a config
    file), else ``template``'s scheduler, else detection: the highest
    :meth:`~ezpz.schedulers.base.Scheduler.affinity`.  With ``batch`` (``ezpz
    submit``) only adapters that write batch scripts count, and outside any
    of their jobs the one whose submit command ``which`` finds on ``PATH``.
    Returns the adapter and why it was chosen (``chosen`` when named).
    """
    if name is not None or template is not None:
        wanted = name if name is not None else str(template.scheduler if template else "")
        if wanted not in adapters:
            raise SchedulerError("unknown scheduler", wanted, closest(wanted, adapters))
        chosen = adapters[wanted]
        if batch and not chosen.submit_argv:
            raise SchedulerError(
                f"the {wanted} scheduler has no batch system to submit to", wanted, _batch_hint(adapters)
            )
        return chosen, "chosen" if name is not None else f"template:{template.name if template else ''}"
    if batch:
        return _pick_batch(adapters, environ, which)
    scores = {n: a.affinity(environ) for n, a in adapters.items()}
    best = max(scores.values())
    top = [n for n, s in scores.items() if s == best]
    if best >= 2 and len(top) > 1:
        raise SchedulerError("more than one scheduler job detected", ", ".join(top), "pass --scheduler NAME")
    if best < 0:
        raise SchedulerError("no scheduler adapter is active", None, "pass --scheduler local")
    return adapters[top[0]], f"detected (affinity {best})"


def _batch_hint(adapters: Mapping[str, Scheduler]) -> str:
    names = "|".join(n for n, a in adapters.items() if a.submit_argv)
    return f"pass --scheduler {names} or --template NAME (see ezpz templates list)"


def _pick_batch(
    adapters: Mapping[str, Scheduler], environ: Mapping[str, str], which: Callable[[str], str | None]
) -> tuple[Scheduler, str]:
    """The batch system whose job we are inside, else the one whose submit command is on PATH."""
    batch = {n: a for n, a in adapters.items() if a.submit_argv}
    inside = [a for a in batch.values() if a.affinity(environ) >= 2]
    if inside:
        return inside[0], "inside its job"
    on_path = [a for a in batch.values() if which(a.submit_argv[0])]
    if len(on_path) == 1:
        return on_path[0], f"{on_path[0].submit_argv[0]} on PATH"
    given = ", ".join(a.submit_argv[0] for a in on_path) if on_path else None
    raise SchedulerError("cannot tell which batch system to submit to", given, _batch_hint(adapters))
