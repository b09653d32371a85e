"""History's W&B side: start or join a run, log each step's statistics, finish.

W&B must never stop training: every failure is one warning (with the API
key masked) and W&B is off for the rest of the run.  ``wandb`` is imported
only when a run logs to W&B (it is slow to import).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

from ezpz.log import get_logger
from ezpz.runtime.crossrank import Stat
from ezpz.runtime.history_input import env_flag

__all__ = ["WandbSink"]

log = get_logger("ezpz.history")


def _redact(text: str) -> str:
    secret = os.environ.get("WANDB_API_KEY")
    return text.replace(secret, "***") if secret else text


class WandbSink:
    """One W&B run that History logs to; ``owned`` when History started it (and so finishes it)."""

    def __init__(self, module: ModuleType, owned: bool) -> None:
        self.module = module
        self.owned = owned

    @classmethod
    def start(cls, wanted: bool | None, run_dir: Path, world_size: int) -> WandbSink | None:
        """The run to log to: ``True`` joins the active run or starts one, ``False`` none.

        ``None``: an already active run, else one when ``EZPZ_WANDB`` is on.
        A new run goes to project ``$EZPZ_WANDB_PROJECT`` (default ``ezpz``).
        """
        if wanted is False:
            return None
        module = sys.modules.get("wandb")
        if wanted is None:
            if module is not None and getattr(module, "run", None) is not None:
                return cls(module, owned=False)
            if not env_flag("EZPZ_WANDB", False):
                return None
        try:
            # wandb only for runs that log to W&B (it is slow to import, and off the launch path).
            import wandb
        except ImportError:
            log.warning("W&B logging asked for but wandb is not installed: pip install 'ezpz[wandb]'")
            return None
        if wandb.run is not None:
            return cls(wandb, owned=False)
        try:
            wandb.init(
                project=os.environ.get("EZPZ_WANDB_PROJECT") or "ezpz",
                dir=str(run_dir) if run_dir.is_dir() else None,
                config={"world_size": world_size},
            )
        except Exception as exc:  # W&B must never stop training
            log.warning("W&B disabled: could not start a run (%s: %s)", type(exc).__name__, _redact(str(exc)))
            return None
        return cls(wandb, owned=True)

    def log(self, stats: dict[str, Stat], step: int | float) -> bool:
        """Log one step (the mean, and std/min/max over more than one rank); False once W&B failed."""
        data: dict[str, float] = {}
        for key, s in stats.items():
            data[key] = s.mean
            if s.n > 1:
                data.update({f"{key}/std": s.std, f"{key}/min": s.min, f"{key}/max": s.max})
        try:
            self.module.log(data, step=int(step))
        except Exception as exc:  # W&B must never stop training
            log.warning("W&B disabled: log failed (%s: %s)", type(exc).__name__, _redact(str(exc)))
            return False
        return True

    def finish(self) -> None:
        """Finish the run if History started it."""
        if not self.owned:
            return
        try:
            self.module.finish()
        except Exception as exc:  # W&B must never stop training
            log.warning("W&B finish failed (%s: %s)", type(exc).__name__, _redact(str(exc)))
