"""Device masks: which of a node's accelerators each local rank may see.  Pure.

The plan carries the mask as two variables, and the rank shim exports this
rank's entry (no process of its own):

* ``EZPZ_DEVICE_VAR``: the vendor's variable (``CUDA_VISIBLE_DEVICES``,
  ``ROCR_VISIBLE_DEVICES``, ``ZE_AFFINITY_MASK``);
* ``EZPZ_DEVICE_MAP``: one entry per local rank, separated by spaces
  (``0 1 2 3``; on Aurora's tiles ``0.0 0.1 1.0 … 5.1``).

With as many ranks per node as devices each rank gets one; with fewer, each
gets an equal block of consecutive devices (``0,1 2,3`` for 2 ranks on 4
GPUs); with more (``--oversubscribe``), neighbouring ranks share one.
"""

from __future__ import annotations

from ezpz.errors import SpecError

__all__ = ["DEVICE_MASKS", "TILES_PER_GPU", "device_map", "device_plan_env"]

#: Mask kind -> the variable it sets.  ``ze`` counts whatever devices Level
#: Zero shows (tiles in Aurora's default FLAT mode, whole GPUs in COMPOSITE);
#: ``ze-tile`` writes ``gpu.tile``, as ALCF's Aurora guidance does.
DEVICE_MASKS: dict[str, str] = {
    "cuda": "CUDA_VISIBLE_DEVICES",
    "rocr": "ROCR_VISIBLE_DEVICES",
    "ze": "ZE_AFFINITY_MASK",
    "ze-tile": "ZE_AFFINITY_MASK",
}
#: Tiles per Intel Data Center GPU Max (Aurora, Sunspot).
TILES_PER_GPU = 2


def _devices(kind: str, accelerators: int) -> list[str]:
    if kind != "ze-tile":
        return [str(i) for i in range(accelerators)]
    if accelerators % TILES_PER_GPU:
        raise SpecError(
            f"ze-tile masks need accelerators per node in whole GPUs of {TILES_PER_GPU} tiles",
            f"accelerators_per_node={accelerators}",
            "set accelerators_per_node to the node's tile count (Aurora: 12), or use --device-mask ze",
        )
    return [f"{gpu}.{tile}" for gpu in range(accelerators // TILES_PER_GPU) for tile in range(TILES_PER_GPU)]


def device_map(kind: str, ppn: int, accelerators: int) -> tuple[str, tuple[str, ...]]:
    """Return the variable for ``kind`` and each local rank's entry, for ``ppn`` ranks on ``accelerators``."""
    if kind not in DEVICE_MASKS:
        raise SpecError("unknown device mask", kind, f"valid: none, {', '.join(DEVICE_MASKS)}")
    if accelerators < 1:
        raise SpecError(
            "a device mask needs the node's accelerator count, and it is unknown here",
            f"--device-mask {kind}",
            "use a site template (-t aurora), set accelerators_per_node (EZPZ_ACCELERATORS_PER_NODE=N), "
            "or pass --device-mask none",
        )
    devices = _devices(kind, accelerators)
    count = len(devices)
    if ppn <= count:
        block = count // ppn
        entries = tuple(",".join(devices[i * block : (i + 1) * block]) for i in range(ppn))
    else:
        entries = tuple(devices[i * count // ppn] for i in range(ppn))
    return DEVICE_MASKS[kind], entries


def device_plan_env(
    kind: str | None, *, ppn: int, accelerators: int, env: dict[str, str], rank_env: bool, source: str
) -> tuple[dict[str, str], str]:
    """Return the plan variables for mask ``kind`` and a note for the dry run.

    No variables for ``None``/``"none"``, when ``env`` (the user's ``-x``)
    already sets the variable, or without the rank shim (``rank_env`` false):
    then a template's default quietly stands down, while a mask the user
    asked for (``source`` not a template) is an error.
    """
    if kind in (None, "none"):
        return {}, source
    var, entries = device_map(kind, ppn, accelerators)
    if var in env:
        return {}, f"{source}; {var} given with -x wins"
    if not rank_env:
        if not source.startswith("template:"):
            raise SpecError(
                "a device mask is set per rank by the rank shim, which --no-rank-env turns off",
                f"--device-mask {kind}",
                f"drop --no-rank-env, or pass --device-mask none and set {var} yourself",
            )
        return {}, f"{source}; off: --no-rank-env"
    return {"EZPZ_DEVICE_VAR": var, "EZPZ_DEVICE_MAP": " ".join(entries)}, source
