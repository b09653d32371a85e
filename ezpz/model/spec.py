"""``LaunchSpec``: the user's intent for one launch, validated.

A spec says *what* to launch and how many ranks where; it knows nothing of the
machine.  :meth:`LaunchSpec.render` resolves it against this machine
(template, scheduler, allocation) into a :class:`~ezpz.model.plan.Plan`, and
:meth:`LaunchSpec.run` executes that plan.

Values come in layers, merged in this order (later wins)::

    model defaults < template < config file < EZPZ_* environment < flags

Scalars replace, ``env`` tables merge key by key, ``launcher_flags`` lists
concatenate.  Every field remembers the layer that set it
(:attr:`LaunchSpec.provenance`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ezpz.errors import SpecError, closest
from ezpz.model.console import rank_ranges
from ezpz.model.validation import first_error

__all__ = ["FIELD_ALIASES", "Layer", "LaunchSpec", "field_hint", "load_config", "merge_layers"]

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Count = Annotated[int, Field(ge=1, le=10_000_000)]

#: A layer is (name, partial field values); see :func:`merge_layers`.
Layer = tuple[str, Mapping[str, Any]]


def _parse_env_items(items: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise SpecError("environment entry is not KEY=VALUE", item, "write -x NAME=value")
        env[key] = value
    return env


class LaunchSpec(BaseModel):
    """What to launch, and how many ranks where.

    Any field may be left unset; unset counts are derived from the allocation
    when the spec is rendered (see ``docs/launch.md`` for the counting rules).
    Invalid values raise :class:`~ezpz.errors.SpecError`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    command: list[str] = Field(default_factory=list, description="The program and its arguments.")
    np: Count | None = Field(None, description="Total ranks (-n).")
    ppn: Count | None = Field(None, description="Ranks per host (-ppn).")
    nhosts: Count | None = Field(None, description="Hosts to use (-nh); the first hosts of the job.")
    hostfile: Path | None = Field(None, description="Hostfile to use instead of the job's hosts.")
    cpu_bind: str | None = Field(None, description="CPU binding passed to the launcher (e.g. depth, list:1-8:9-16).")
    env: dict[str, str] = Field(default_factory=dict, description="Variables to pass to every rank (KEY=VALUE).")
    launcher_flags: list[str] = Field(default_factory=list, description="Extra flags given to the launcher verbatim.")
    # Checked against the dialects (built-in and plugins') when rendered: ezpz.schedulers.dialects.
    launcher: str | None = Field(
        None,
        description="MPI dialect to render (pals, hydra, openmpi, srun or a plugin's); default from the scheduler.",
    )
    accelerators_per_node: int | None = Field(
        None, ge=0, le=4096, description="Accelerators per node; default from template, scheduler or a probe."
    )
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Kill a run that prints nothing for this many seconds (exit 124)."
    )
    retries: int = Field(0, ge=0, le=100, description="Re-run a failed launch this many times, with backoff.")
    template: str | None = Field(None, description="Template name or path to a .toml template.")
    scheduler: str | None = Field(None, description="Scheduler adapter to use instead of auto-detection.")
    oversubscribe: bool = Field(False, description="Allow more ranks per node than accelerators.")
    master_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port; default: a free port.")
    rank_env: bool = Field(True, description="Give every rank torchrun's variables (RANK, WORLD_SIZE, ...).")
    # issue #14: host selection and node failover
    exclude_hosts: str | None = Field(
        None, description="Hosts of the job to leave out: a Slurm host list (nid[001-004]), @FILE or a path."
    )
    include_hosts: str | None = Field(
        None, description="Use only these hosts of the job: a Slurm host list, @FILE or a path."
    )
    spare_nodes: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Hosts held out of the first attempt (the last K usable) to replace failed ones on --retries.",
    )
    # Device masks per rank (#14, part 2).
    device_mask: Literal["none", "cuda", "rocr", "ze", "ze-tile"] | None = Field(
        None,
        description="Give each rank its own accelerators: cuda, rocr, ze (whole devices) or ze-tile (gpu.tile); none.",
    )
    # Run supervision (issue #12).
    tag: bool = Field(True, description="Label each console line with its rank ([2], or [2@host] on many hosts).")
    ranks: str | None = Field(
        None, description="Ranks the console shows (0,2-3 or all); default: all up to 64 ranks, else rank 0."
    )
    run_dir: Path | None = Field(
        None, description="Run directory for logs, plan.json, result.json; default ./ezpz-runs/<time>-<id>."
    )
    # issue 15: long runs
    stop_grace: float = Field(
        30.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds the ranks get to save after a SIGTERM before they are killed.",
    )

    _provenance: dict[str, str] = PrivateAttr(default_factory=dict)
    _layers: list[Layer] = PrivateAttr(default_factory=list)

    def __init__(self, **data: Any) -> None:
        """Validate ``data``; any problem raises :class:`~ezpz.errors.SpecError`."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _spec_error(exc, origin=None) from exc

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env_items(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return _parse_env_items(value)
        return value

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY.match(key):
                raise ValueError(f"bad variable name {key!r}: use letters, digits and _")
        return value

    @field_validator("ranks")
    @classmethod
    def _rank_filter(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() != "all":
            try:
                rank_ranges(value)
            except SpecError as exc:
                raise ValueError(f"{exc.what}; {exc.hint}") from None
        return value

    @field_validator("template", "scheduler", "launcher", "exclude_hosts", "include_hosts")
    @classmethod
    def _nonblank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _counts_agree(self) -> LaunchSpec:
        np, ppn, nh = self.np, self.ppn, self.nhosts
        if np is not None and ppn is not None and nh is not None and np != nh * ppn:
            fixes = [f"-n {nh * ppn}"]
            if np % ppn == 0:
                fixes.append(f"-nh {np // ppn}")
            if np % nh == 0:
                fixes.append(f"-ppn {np // nh}")
            raise ValueError(
                f"np={np} is not nhosts × ppn = {nh} × {ppn}; give two of the three, or make them agree: "
                + " or ".join(fixes)
            )
        if np is not None and ppn is not None and np % ppn:
            raise ValueError(f"np={np} is not divisible by ppn={ppn}; {_count_fixes(np, ppn, '-ppn')}")
        if np is not None and nh is not None and np % nh:
            raise ValueError(f"np={np} is not divisible by nhosts={nh}; {_count_fixes(np, nh, '-nh')}")
        if np is not None and nh is not None and nh > np:
            raise ValueError(f"nhosts={nh} is more than np={np}; use -nh {np} or fewer")
        return self

    @property
    def provenance(self) -> dict[str, str]:
        """For each field set by a layer, the name of that layer."""
        return dict(self._provenance)

    @classmethod
    def from_layers(cls, layers: Iterable[Layer]) -> LaunchSpec:
        """Merge ``layers`` (lowest first) into a spec that remembers their provenance."""
        layers = list(layers)
        values, provenance = merge_layers(layers)
        origin = next((p for p in provenance.values() if p.startswith("config:")), None)
        try:
            spec = cls.model_validate(values)
        except SpecError as exc:
            # __init__ turned pydantic's error into a SpecError; name the layer.
            if not isinstance(exc.__cause__, ValidationError):
                raise
            raise _spec_error(exc.__cause__, origin=origin, provenance=provenance) from None
        spec._provenance = provenance
        spec._layers = list(layers)
        return spec

    @classmethod
    def from_file(cls, path: str | Path) -> LaunchSpec:
        """Load a TOML config file (LaunchSpec fields at top level; it may name a ``template``)."""
        return cls.from_layers([(f"config:{path}", load_config(path))])

    def render(self, environ: Mapping[str, str] | None = None) -> Any:
        """Resolve this spec on this machine and return the :class:`~ezpz.model.plan.Plan`."""
        # The one upward reference: the value delegates to the launch layer (docs/architecture.md).
        from ezpz.launch.resolve import plan_launch

        return plan_launch(self, environ)

    def run(self, environ: Mapping[str, str] | None = None) -> int:
        """Render and execute; return the launcher's exit code."""
        # The one upward reference: the value delegates to the launch layer (docs/architecture.md).
        from ezpz.launch.execute import execute

        return execute(self.render(environ))


#: Names people write for a field (the launchers' and schedulers' words, ezpz's own flags) -> the field.
FIELD_ALIASES = {
    "n": "np",
    "nproc": "np",
    "nprocs": "np",
    "ntasks": "np",
    "ranks": "np",
    "world_size": "np",
    "ranks_per_node": "ppn",
    "procs_per_node": "ppn",
    "ntasks_per_node": "ppn",
    "nh": "nhosts",
    "nodes": "nhosts",
    "nnodes": "nhosts",
    "num_nodes": "nhosts",
    "hosts": "nhosts",
    "cmd": "command",
    "environment": "env",
    "flags": "launcher_flags",
    "extra_flags": "launcher_flags",
}


def field_hint(key: str) -> str:
    """For an unknown config key: the valid fields, and the one it probably meant (``nprocs`` -> ``np``)."""
    fields = LaunchSpec.model_fields
    word = key.strip().lower().replace("-", "_")
    meant = word if word in fields else FIELD_ALIASES.get(word)
    if meant is None:
        return closest(key, fields)
    return f"valid: {', '.join(sorted(fields))}; did you mean {meant!r}?"


def _count_fixes(np: int, per: int, flag: str) -> str:
    """What would divide: the nearest multiples of ``per`` around ``np``, or divisors of ``np`` around ``per``.

    ``_count_fixes(3, 2, "-ppn")`` is ``"use -n 2 or -n 4, or -ppn 1 or -ppn 3"``.
    """
    multiples = [m for m in (np // per * per, (np // per + 1) * per) if m >= per]
    below = [d for d in range(per - 1, 0, -1) if np % d == 0][:1]
    above = [d for d in range(per + 1, np + 1) if np % d == 0][:1]
    near = below + above  # never empty: per > 1 (else it divides), so 1 divides np below it
    return f"use {' or '.join(f'-n {m}' for m in multiples)}, or {' or '.join(f'{flag} {d}' for d in near)}"


def _spec_error(exc: ValidationError, origin: str | None, provenance: Mapping[str, str] | None = None) -> SpecError:
    """Turn pydantic's first error into one line naming file, field and value."""
    err = first_error(exc)
    loc = err.loc or "spec"
    source = (provenance or {}).get(err.field) or origin
    where = ""
    if source is not None:
        where = f" in {source.removeprefix('config:')}" if source.startswith("config:") else f" (from {source})"
    if err.kind == "extra_forbidden":
        return SpecError(f"unknown key {loc!r}{where}", err.given, field_hint(loc))
    return SpecError(f"invalid {loc}{where}: {err.message}", err.shown)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a dict of LaunchSpec fields (unchecked)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SpecError("config file not found", str(path), "give a TOML file of LaunchSpec fields") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("config file is not readable", str(path), type(exc).__name__) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"config file is not valid TOML: {exc}", str(path)) from None
    unknown = [key for key in data if key not in LaunchSpec.model_fields]
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r} in {path}", data[unknown[0]], field_hint(unknown[0]))
    return data


def merge_layers(layers: Iterable[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge partial field values, lowest layer first.

    Returns the merged values and, for each field, the layer(s) that set it.
    ``env`` merges key by key and ``launcher_flags`` concatenate; every other
    field takes the last layer's value.
    """
    values: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key == "env":
                incoming = _parse_env_items(value) if isinstance(value, (list, tuple)) else dict(value)
                if not incoming:
                    continue
                values["env"] = {**values.get("env", {}), **incoming}
                provenance[key] = f"{provenance[key]}+{name}" if key in provenance else name
            elif key == "launcher_flags":
                if not value:
                    continue
                values[key] = [*values.get(key, []), *value]
                provenance[key] = f"{provenance[key]}+{name}" if key in provenance else name
            else:
                values[key] = value
                provenance[key] = name
    return values, provenance
