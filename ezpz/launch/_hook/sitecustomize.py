"""ezpz's startup hook for Python ranks: stacks on demand for hang dumps.

``ezpz/launch/rank.sh`` puts this folder first on ``PYTHONPATH``, so every Python
rank imports this module at start (no extra process, no import of ezpz).  It
registers :mod:`faulthandler` on ``$EZPZ_DUMP_SIGNAL`` (``ALRM`` by default in
the plans ezpz renders): on that signal every thread's stack goes to stderr and
the program carries on.  ``ezpz launch --timeout`` sends it before stopping a
silent run, so each rank's log shows where it was stuck.  A program that
installs its own handler for that signal replaces this one, as usual.

It then imports the ``sitecustomize`` it shadows (a site's or a
distribution's), so that one still runs.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys


def _register() -> None:
    name = os.environ.get("EZPZ_DUMP_SIGNAL", "").strip().upper().removeprefix("SIG")
    signum = getattr(signal, f"SIG{name}", None) if name else None
    if isinstance(signum, int):
        faulthandler.register(signum, all_threads=True, chain=False)


def _chain() -> None:
    here = os.path.abspath(os.environ.get("EZPZ_HOOK_PATH") or os.path.dirname(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        __import__("sitecustomize")
    except ImportError:
        if ours is not None:
            sys.modules["sitecustomize"] = ours
    finally:
        sys.path[:] = saved


_register()
_chain()
