"""Import guards for optional extras.

``require("torch", "torch")`` imports and returns the module, or raises
:class:`~ezpz.errors.MissingExtraError` naming the pip extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ezpz.errors import MissingExtraError

__all__ = ["lazy_module", "require"]


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


def lazy_module(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's PEP 562 ``__getattr__`` and ``__dir__`` for lazily loaded names.

    ``names`` maps each public name to the module defining it; the first use
    imports that module and caches the value in ``namespace`` (the package's
    ``globals()``).  A name that is the last part of its module's path
    (``"checkpoint": "ezpz.runtime.checkpoint"``) is that module itself.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        imported = importlib.import_module(module)
        value = imported if module.rsplit(".", 1)[-1] == name else getattr(imported, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
