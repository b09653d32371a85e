"""ezpz.errors: the one error tree and its one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ezpz import errors
from ezpz.errors import EzpzError, closest, one_line, plural


def test_one_line_names_what_given_and_hint() -> None:
    assert one_line("unknown template", "auroa", "valid: aurora") == "unknown template (given 'auroa'); valid: aurora"
    assert one_line("too many hosts", 3) == "too many hosts (given 3)"
    assert one_line("no command", None, "put it after --") == "no command; put it after --"
    assert one_line("no command") == "no command"
    assert one_line("empty hint", "x", "") == "empty hint (given 'x')"


def test_one_line_is_one_line_and_never_ends_in_dot_semicolon() -> None:
    assert one_line("Missing argument 'x'.", None, "run --help") == "Missing argument 'x'; run --help"
    assert one_line("trailing;, ", "v") == "trailing (given 'v')"
    assert one_line("a\nb", "c\nd", "e\nf") == "a b (given 'c\\nd'); e f"
    assert one_line("a", 1.5, "x\ny") == "a (given 1.5); x y"
    assert one_line("no value for X", "") == "no value for X (given '')"  # only punctuation is stripped
    assert one_line("not a directory", Path("/x y")) == "not a directory (given /x y)"  # str(), not repr()


def test_an_error_is_its_line() -> None:
    exc = errors.SpecError("bad np", -2, "give a positive number")
    assert (exc.what, exc.given, exc.hint) == ("bad np", -2, "give a positive number")
    assert exc.line() == str(exc) == "bad np (given -2); give a positive number"


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n.endswith("Error")])
def test_every_error_is_in_the_one_tree(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, EzpzError) and cls.__doc__
    assert cls("what", "given").line() == "what (given 'given')"


def test_closest_lists_the_valid_names_and_suggests_one() -> None:
    assert closest("auroa", ["polaris", "aurora"]) == "valid: aurora, polaris; did you mean 'aurora'?"
    assert closest("zzz", ["polaris", "aurora"]) == "valid: aurora, polaris"
    assert closest("x", []) == "valid: (none)"
    # one suggestion, the closest, even when several are close
    assert closest("auroa", ["aurore", "aurora", "aurorb"]) == "valid: aurora, aurorb, aurore; did you mean 'aurora'?"


def test_plural() -> None:
    assert plural(1, "host") == "1 host"
    assert plural(0, "host") == "0 hosts"
    assert plural(2, "process", "processes") == "2 processes"
    assert plural(1, "process", "processes") == "1 process"
