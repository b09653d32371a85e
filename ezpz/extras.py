"""Import guards for optional extras.

``require("torch", "torch")`` imports and returns the module, or raises
:class:`~ezpz.errors.MissingExtraError` naming the pip extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ezpz.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise one clear line naming ``ezpz[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingExtraError(
            f"{module} is not installed", module, f"install it with: pip install 'ezpz[{extra}]'"
        ) from None
