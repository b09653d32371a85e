"""The order of a launch's layers, in one place.

From lowest to highest (later wins)::

    model defaults < template < config file < EZPZ_* environment < flags

:func:`build_layers` turns what a command was given (a config file, its
flags) into layers; :func:`with_env` adds the ``EZPZ_*`` environment layer
(after config files, before flags) and :func:`with_template` the template's
defaults below everything.  :func:`ezpz.launch.resolve.choose` calls the last
two, so ``ezpz launch``, ``ezpz submit``, ``ezpz doctor``, ``ezpz yeet-env``
and ``LaunchSpec(...).render()`` all stack layers the same way.
:func:`ezpz.model.spec.merge_layers` says how values merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ezpz.model.spec import Layer, load_config
from ezpz.model.template import Template

__all__ = ["ENV_FIELDS", "build_layers", "env_layer", "with_env", "with_template"]


def build_layers(flags: Mapping[str, Any], config: str | Path | None = None) -> list[Layer]:
    """Return the layers of a command's input: the config file (if any), then ``flags``.

    Flags that are ``None`` or empty lists were not given and are dropped.
    """
    given = {key: value for key, value in flags.items() if value is not None and value != []}
    layers: list[Layer] = [(f"config:{config}", load_config(config))] if config else []
    return [*layers, ("flags", given)] if given else layers


def with_env(layers: Sequence[Layer], environ: Mapping[str, str]) -> list[Layer]:
    """Insert the ``EZPZ_*`` environment layer after config files, unless ``layers`` has one."""
    if any(name == "env" for name, _ in layers):
        return list(layers)
    cut = sum(1 for name, _ in layers if name.startswith("config:"))
    return [*layers[:cut], ("env", env_layer(environ)), *layers[cut:]]


def with_template(layers: Sequence[Layer], template: Template | None, auto: str | None = None) -> list[Layer]:
    """Put ``template``'s defaults below ``layers``.

    ``auto`` says why a template no layer named was chosen (``host x matches
    'x4*'``); it is recorded as the source of the ``template`` field.
    """
    if template is None:
        return list(layers)
    base: list[Layer] = [(f"template:{template.name}", template.defaults)]
    if auto is not None:
        base.append((f"template:{template.name} ({auto})", {"template": template.name}))
    return [*base, *layers]


#: EZPZ_* variables read by the environment layer, and the field each sets.
ENV_FIELDS = {
    "EZPZ_NP": "np",
    "EZPZ_PPN": "ppn",
    "EZPZ_NHOSTS": "nhosts",
    "EZPZ_HOSTFILE": "hostfile",
    "CPU_BIND": "cpu_bind",
    "EZPZ_CPU_BIND": "cpu_bind",
    "EZPZ_LAUNCHER": "launcher",
    "EZPZ_TEMPLATE": "template",
    "EZPZ_SCHEDULER": "scheduler",
    "EZPZ_TIMEOUT": "timeout",
    "EZPZ_RETRIES": "retries",
    "EZPZ_OVERSUBSCRIBE": "oversubscribe",
    "EZPZ_MASTER_PORT": "master_port",
    "EZPZ_ACCELERATORS_PER_NODE": "accelerators_per_node",
    "EZPZ_EXCLUDE_HOSTS": "exclude_hosts",
    "EZPZ_INCLUDE_HOSTS": "include_hosts",
    "EZPZ_SPARE_NODES": "spare_nodes",
    "EZPZ_DEVICE_MASK": "device_mask",
    "EZPZ_STOP_GRACE": "stop_grace",
}


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the spec fields set by ``EZPZ_*`` variables (and the reference's ``CPU_BIND``)."""
    layer: dict[str, Any] = {}
    for var, field in ENV_FIELDS.items():
        raw = environ.get(var, "").strip()
        if raw:
            layer[field] = raw
    return layer
