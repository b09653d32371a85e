"""Template discovery: reading template files, finding one by name, path or hostname.

The value itself is :class:`ezpz.model.template.Template`.

A template names its scheduler, the hostnames of its site, and default
:class:`~ezpz.model.spec.LaunchSpec` fields (launcher dialect, accelerators per
node, cpu binding, launcher flags, env)::

    description = "ALCF Polaris: PBS Pro + PALS mpiexec, 4 NVIDIA A100 per node"
    scheduler = "pbs"
    hostnames = ["x3*c*s*b*n*"]

    [defaults]
    launcher = "pals"
    accelerators_per_node = 4
    cpu_bind = "depth"
    launcher_flags = ["--depth=8"]

Built-in templates ship inside the wheel (``ezpz/templates``); plugins add
directories through the ``ezpz_template_dirs`` hook.  ``--template NAME``
looks a name up; ``--template path/to/site.toml`` reads a file.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

import tomllib
from pydantic import ValidationError

from ezpz.errors import TemplateError, closest
from ezpz.model.template import Template
from ezpz.model.validation import first_error
from ezpz.plugins.manager import plugin_template_dirs

__all__ = ["builtin_template_dir", "find_template", "load_template", "template_files", "templates_for_host"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def builtin_template_dir() -> Path:
    """The directory of the built-in templates (inside the wheel, or the source tree)."""
    packaged = Path(str(resources.files("ezpz") / "templates"))
    if packaged.is_dir():
        return packaged
    # Editable installs and source checkouts keep templates/ at the repo top.
    return Path(__file__).resolve().parents[2] / "templates"


def _search_dirs() -> list[Path]:
    return [builtin_template_dir(), *plugin_template_dirs()]


@cache
def template_files() -> dict[str, Path]:
    """Map every known template name to its file; built-ins win over plugins."""
    found: dict[str, Path] = {}
    for directory in _search_dirs():
        for path in sorted(Path(directory).glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def load_template(path: str | Path, name: str | None = None) -> Template:
    """Read and validate the template file at ``path``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TemplateError(
            "template file not found", str(path), "give an existing .toml file or a template name"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError("template file is not readable", str(path), type(exc).__name__) from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"template is not valid TOML: {exc}", str(path)) from None
    try:
        return Template.model_validate({"name": name or path.stem, "path": str(path), **data})
    except ValidationError as exc:
        err = first_error(exc)
        raise TemplateError(f"invalid template {path}: {err.loc}: {err.message}") from None


def find_template(name_or_path: str) -> Template:
    """Return the template called ``name_or_path``, or read it from a ``.toml`` path.

    Names are names: only letters, digits, ``-`` and ``_``; a path must end in
    ``.toml``.  Unknown names list the known ones and suggest the closest.
    """
    if name_or_path.endswith(".toml"):
        return load_template(name_or_path)
    known = template_files()
    if not _NAME.match(name_or_path):
        raise TemplateError(
            "not a template name",
            name_or_path,
            f"names are letters, digits, '-' and '_' (a file must end in .toml); {closest(name_or_path, known)}",
        )
    if name_or_path not in known:
        raise TemplateError("unknown template", name_or_path, closest(name_or_path, known))
    return load_template(known[name_or_path], name_or_path)


def templates_for_host(hostname: str, scheduler: str) -> tuple[Template, str] | None:
    """The first template whose hostname patterns match ``hostname`` and whose scheduler is active.

    Returns the template and the matching pattern, or ``None``.
    """
    for name, path in template_files().items():
        template = load_template(path, name)
        if template.scheduler != scheduler:
            continue
        pattern = template.matches_host(hostname)
        if pattern is not None:
            return template, pattern
    return None
