"""Split ``ezpz launch`` / ``ezpz submit`` arguments into ezpz's options, launcher flags and the command.

The rules (``docs/launch.md``, "Options, launcher flags and the ``--`` rule"):

* After ``--`` nothing is ezpz's.  Before it, every word ezpz does not know
  goes to the launcher, values included.
* Without ``--``, the first plain word starts the command.  A launcher option
  ezpz knows (:data:`ezpz.schedulers.flags.LAUNCHER_OPTIONS`) takes its values
  with it (``--depth 8``); after one ezpz does not know, a plain word could be
  its value or the command, so ezpz stops and asks (:class:`AmbiguousArgs`).
* An unknown option close to one of ezpz's (``--dryrun``, ``--timout``) is a
  mistake, not a launcher flag: ezpz stops with "did you mean".
  ``--launcher-flag=--dryrun`` hands such a word to the launcher anyway.

Nothing here runs a process: a bad split is an error before any launch.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence

from ezpz.errors import SpecError
from ezpz.schedulers.flags import LAUNCHER_OPTIONS, option_arity

__all__ = ["PASS_OPTION", "Split", "looks_like_ours", "split_args"]

#: The option that hands its value to the launcher as it is, even when it looks like one of ezpz's.
PASS_OPTION = "--launcher-flag"
#: How alike (difflib ratio) an unknown option must be to one of ezpz's to count as a typo of it.
_CUTOFF = 0.8


@dataclasses.dataclass(frozen=True)
class Split:
    """Arguments split three ways, each in the order given."""

    ours: list[str]
    launcher_flags: list[str]
    command: list[str]


def _name(token: str) -> str:
    return token.split("=", 1)[0]


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-"


def looks_like_ours(token: str, ours: Mapping[str, bool]) -> str | None:
    """Return the ezpz option that unknown option ``token`` is probably a typo of, else ``None``.

    A launcher's own option is never a typo, however close (srun's
    ``--gpu-bind`` beside ``--cpu-bind``).  ``ours`` maps each of ezpz's
    option spellings (``-n``, ``--dry-run``) to whether it takes a value.
    """
    name = _name(token)
    body = name.lstrip("-")
    if not body or name in ours or body in LAUNCHER_OPTIONS:
        return None
    bodies = {spelling.lstrip("-"): spelling for spelling in sorted(ours, key=len, reverse=True)}
    match = difflib.get_close_matches(body, list(bodies), n=1, cutoff=_CUTOFF)
    return bodies[match[0]] if match else None


def _typo(token: str, suggestion: str) -> SpecError:
    return SpecError(
        "unknown ezpz option",
        _name(token),
        f"did you mean {suggestion}? To hand it to the launcher as it is, write {PASS_OPTION}={token}",
    )


def split_args(args: Sequence[str], ours: Mapping[str, bool]) -> Split:
    """Split ``args`` into ezpz's options, launcher flags and the command (see the module docstring).

    ``ours`` maps each of ezpz's option spellings to whether it takes a
    value.  Raises :class:`~ezpz.errors.SpecError` for a mistyped ezpz option
    and for a word that may be a launcher flag's value or the command.
    """
    args = list(args)
    cut = args.index("--") if "--" in args else None
    head = args if cut is None else args[:cut]
    split = Split([], [], [] if cut is None else args[cut + 1 :])
    i = 0
    while i < len(head):
        token = head[i]
        name = _name(token)
        if name == PASS_OPTION:
            i += _pass_on(head, i, split.launcher_flags)
        elif name in ours:
            takes_value = ours[name] and "=" not in token
            split.ours.extend(head[i : i + 2] if takes_value else [token])
            i += 2 if takes_value else 1
        elif _is_option(token):
            i += _launcher_option(head, i, ours, split.launcher_flags, command_follows=cut is None)
        elif cut is None:
            split.command.extend(head[i:])
            break
        else:
            split.launcher_flags.append(token)
            i += 1
    return split


def _pass_on(head: list[str], i: int, flags: list[str]) -> int:
    """Hand the value of ``--launcher-flag`` at ``head[i]`` to the launcher; return the words it took."""
    token = head[i]
    value = token.partition("=")[2] if "=" in token else (head[i + 1] if i + 1 < len(head) else None)
    if value is None:
        raise SpecError(f"{PASS_OPTION} needs a value", token, f"write {PASS_OPTION}=--flag")
    flags.append(value)
    return 1 if "=" in token else 2


def _launcher_option(
    head: list[str], i: int, ours: Mapping[str, bool], flags: list[str], *, command_follows: bool
) -> int:
    """Hand the unknown option ``head[i]`` to the launcher, with the values it takes; return the words taken.

    Before ``--`` (``command_follows``), a launcher option ezpz knows takes its
    values with it, and a plain word after one it does not know is ambiguous.
    """
    token = head[i]
    suggestion = looks_like_ours(token, ours)
    if suggestion is not None:
        raise _typo(token, suggestion)
    flags.append(token)
    if not command_follows:
        return 1
    name = _name(token)
    arity = option_arity(token)
    if arity is None:
        following = head[i + 1] if i + 1 < len(head) else None
        if following is not None and not _is_option(following):
            raise SpecError(
                f"cannot tell whether {following!r} is the value of launcher option {token} or the start of "
                "the command",
                f"{token} {following}",
                f"write {name}={following} (a value), or end ezpz's options with --: "
                f"ezpz launch ... {token} -- {following} ...",
            )
        return 1
    values = head[i + 1 : i + 1 + arity]
    clash = next((v for v in values if _name(v) in ours), None)
    if len(values) < arity or clash is not None:
        raise SpecError(
            f"launcher option {token} takes {arity} value{'s' if arity > 1 else ''}",
            " ".join([token, *values]),
            f"write {name}=VALUE before the command",
        )
    flags.extend(values)
    return 1 + arity
