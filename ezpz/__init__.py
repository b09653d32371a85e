"""ezpz: portable distributed PyTorch launches and the runtime helpers around them.

Public names load lazily (PEP 562): ``import ezpz`` imports neither torch nor
mpi4py nor wandb, and ``from ezpz import LaunchSpec`` loads only the launch
path.  Runtime helpers import torch when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ezpz.extras import lazy_module

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY: dict[str, str] = {
    # launch path
    "LaunchSpec": "ezpz.spec",
    "Plan": "ezpz.plan",
    "Allocation": "ezpz.schedulers.base",
    "EzpzError": "ezpz.errors",
    "get_logger": "ezpz.log",
    # runtime (torch extra)
    "setup_torch": "ezpz.dist",
    "get_rank": "ezpz.dist",
    "get_local_rank": "ezpz.dist",
    "get_world_size": "ezpz.dist",
    "get_torch_device": "ezpz.dist",
    "get_torch_backend": "ezpz.dist",
    "get_dist_info": "ezpz.dist",
    "barrier": "ezpz.dist",
    "cleanup": "ezpz.dist",
    "wrap_model": "ezpz.wrap",
    "wrap_ddp": "ezpz.wrap",
    "wrap_fsdp": "ezpz.wrap",
    # metrics
    "History": "ezpz.history",
}

__all__ = [
    "Allocation",
    "EzpzError",
    "History",
    "LaunchSpec",
    "Plan",
    "__version__",
    "barrier",
    "cleanup",
    "get_dist_info",
    "get_local_rank",
    "get_logger",
    "get_rank",
    "get_torch_backend",
    "get_torch_device",
    "get_world_size",
    "setup_torch",
    "wrap_ddp",
    "wrap_fsdp",
    "wrap_model",
]

if TYPE_CHECKING:
    from ezpz.dist import (
        barrier,
        cleanup,
        get_dist_info,
        get_local_rank,
        get_rank,
        get_torch_backend,
        get_torch_device,
        get_world_size,
        setup_torch,
    )
    from ezpz.errors import EzpzError
    from ezpz.history import History
    from ezpz.log import get_logger
    from ezpz.plan import Plan
    from ezpz.schedulers.base import Allocation
    from ezpz.spec import LaunchSpec
    from ezpz.wrap import wrap_ddp, wrap_fsdp, wrap_model


__getattr__, __dir__ = lazy_module(__name__, _LAZY, globals())
