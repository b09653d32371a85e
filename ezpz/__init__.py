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
    "LaunchSpec": "ezpz.model.spec",
    "Plan": "ezpz.model.plan",
    "Allocation": "ezpz.model.allocation",
    "EzpzError": "ezpz.errors",
    "get_logger": "ezpz.log",
    # runtime (torch extra)
    "setup_torch": "ezpz.runtime.dist",
    "get_rank": "ezpz.runtime.dist",
    "get_local_rank": "ezpz.runtime.dist",
    "get_world_size": "ezpz.runtime.dist",
    "get_torch_device": "ezpz.runtime.dist",
    "get_torch_backend": "ezpz.runtime.dist",
    "get_dist_info": "ezpz.runtime.dist",
    "barrier": "ezpz.runtime.dist",
    "cleanup": "ezpz.runtime.dist",
    "wrap_model": "ezpz.runtime.wrap",
    "wrap_ddp": "ezpz.runtime.wrap",
    "wrap_fsdp": "ezpz.runtime.wrap",
    "wrap_hsdp": "ezpz.runtime.wrap",
    # checkpoints: the module itself (ezpz.checkpoint.save, .load_latest, ...)
    "checkpoint": "ezpz.runtime.checkpoint",
    # metrics
    "History": "ezpz.runtime.history",
    "Progress": "ezpz.runtime.progress",
    # long runs (issue 15)
    "should_stop": "ezpz.runtime.stop",
}

__all__ = [
    "Allocation",
    "EzpzError",
    "History",
    "LaunchSpec",
    "Plan",
    "Progress",
    "__version__",
    "barrier",
    "checkpoint",
    "cleanup",
    "get_dist_info",
    "get_local_rank",
    "get_logger",
    "get_rank",
    "get_torch_backend",
    "get_torch_device",
    "get_world_size",
    "setup_torch",
    "should_stop",
    "wrap_ddp",
    "wrap_fsdp",
    "wrap_hsdp",
    "wrap_model",
]

if TYPE_CHECKING:
    from ezpz.errors import EzpzError
    from ezpz.log import get_logger
    from ezpz.model.allocation import Allocation
    from ezpz.model.plan import Plan
    from ezpz.model.spec import LaunchSpec
    from ezpz.runtime import checkpoint
    from ezpz.runtime.dist import (
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
    from ezpz.runtime.history import History
    from ezpz.runtime.progress import Progress
    from ezpz.runtime.stop import should_stop
    from ezpz.runtime.wrap import wrap_ddp, wrap_fsdp, wrap_hsdp, wrap_model


__getattr__, __dir__ = lazy_module(__name__, _LAZY, globals())
