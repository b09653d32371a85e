"""Hostfiles and Slurm node lists: every form launchers accept, garbage rejected with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ezpz.errors import SchedulerError, SpecError
from ezpz.schedulers.hosts import (
    HostSlots,
    compress_nodelist,
    expand_nodelist,
    parse_host_set,
    parse_hostfile,
    read_host_set,
    read_hostfile,
)


@pytest.mark.parametrize(
    ("text", "hosts", "slots"),
    [
        ("x4000c0s0b0n0\nx4000c0s1b0n0\n", ("x4000c0s0b0n0", "x4000c0s1b0n0"), None),
        ("a\nb", ("a", "b"), None),
        ("\n\n  a  \n\n\tb\n", ("a", "b"), None),
        ("# nodes of job 42\na # first\n\n# done\nb\n", ("a", "b"), None),
        ("a:4\nb:2\n", ("a", "b"), (4, 2)),
        ("a slots=4\nb slots=2\n", ("a", "b"), (4, 2)),
        ("a max_slots=3\n", ("a",), (3,)),
        ("a max-slots=3\n", ("a",), (3,)),
        ("a:2 # MPICH form with a comment\n", ("a",), (2,)),
        ("a\na\nb\n", ("a", "b"), (2, 1)),
        ("a:2\nb\na:3\n", ("a", "b"), (5, 1)),
        ("n1.cluster.example.org\nn_2\n", ("n1.cluster.example.org", "n_2"), None),
        ("a\r\nb\r\n", ("a", "b"), None),
    ],
)
def test_valid_forms(text: str, hosts: tuple[str, ...], slots: tuple[int, ...] | None) -> None:
    assert parse_hostfile(text) == HostSlots(hosts, slots)


def test_order_is_first_appearance() -> None:
    assert parse_hostfile("c\na\nb\na\n").hosts == ("c", "a", "b")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a\nb c\n", 2),
        ("a\n\n# ok\nhost slots=x\n", 4),
        ("a:0\n", 1),
        ("a:-1\n", 1),
        ("a:\n", 1),
        ("a:two\n", 1),
        ("a slots=0\n", 1),
        ("a\nb\n$(rm -rf ~)\n", 3),
        ("a\n-bad\n", 2),
        ("a\nb;c\n", 2),
        ("a\nhost slots=2 extra\n", 2),
        ("a\nhöst\n", 2),
    ],
)
def test_garbage_names_its_line(text: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        parse_hostfile(text, origin="hosts.txt")
    assert f"hosts.txt line {line}" in info.value.what
    assert info.value.given == text.splitlines()[line - 1].strip()
    assert info.value.hint


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "  \n\t\n# x\n"])
def test_no_hosts_is_an_error(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_hostfile(text, origin="empty.txt")
    assert "no hosts" in info.value.what
    assert info.value.hint


@pytest.mark.parametrize(("text", "line"), [("a:²\n", 1), ("b\na:³\n", 2)])
def test_non_ascii_digit_slot_count_is_a_spec_error(text: str, line: int) -> None:
    """'²'.isdigit() is True but int('²') raises ValueError: garbage must still be a SpecError."""
    with pytest.raises(SpecError) as info:
        parse_hostfile(text)
    assert f"line {line}" in info.value.what


def test_read_missing_hostfile(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        read_hostfile(tmp_path / "nope")
    assert "not found" in info.value.what
    assert info.value.given == str(tmp_path / "nope")


def test_read_empty_hostfile(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("")
    with pytest.raises(SpecError) as info:
        read_hostfile(path)
    assert str(path) in info.value.line()


def test_read_directory_or_binary_hostfile(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        read_hostfile(tmp_path)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError):
        read_hostfile(binary)


def test_read_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("a\nb\nnot a host\n")
    with pytest.raises(SpecError) as info:
        read_hostfile(path)
    assert f"{path} line 3" in info.value.what


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("nid001234", ("nid001234",)),
        ("nid[001234-001237]", ("nid001234", "nid001235", "nid001236", "nid001237")),
        ("nid[001234-001235,001300]", ("nid001234", "nid001235", "nid001300")),
        ("nid001234,nid001300", ("nid001234", "nid001300")),
        ("x1000c0s[0-3]b0n0,gpu7", ("x1000c0s0b0n0", "x1000c0s1b0n0", "x1000c0s2b0n0", "x1000c0s3b0n0", "gpu7")),
        ("nid[001234-001235],nid001300", ("nid001234", "nid001235", "nid001300")),
        ("frontier[01234-01235]", ("frontier01234", "frontier01235")),
        ("a[1-2]b[3-4]", ("a1b3", "a1b4", "a2b3", "a2b4")),
    ],
)
def test_expand_nodelist(nodelist: str, hosts: tuple[str, ...]) -> None:
    assert expand_nodelist(nodelist) == hosts
    # srun takes a node list as a set (Slurm orders it), so compression may sort.
    assert sorted(expand_nodelist(compress_nodelist(hosts))) == sorted(hosts)


@pytest.mark.parametrize("nodelist", ["", "nid[", "nid[001-", "a]b", "[]", "a[3-1]", "nid[0-99999999]"])
def test_bad_nodelist_is_a_scheduler_error(nodelist: str) -> None:
    with pytest.raises(SchedulerError) as info:
        expand_nodelist(nodelist)
    assert info.value.given == nodelist


def test_compress_keeps_order_for_subsets() -> None:
    assert compress_nodelist(("nid001234", "nid001235")) == "nid[001234-001235]"


HINT = "use host, host:N or host slots=N"
SET_HINT = "use Slurm host-list syntax (nid[001-004],gpu7), @FILE or a path to a file of hosts"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("   \n\n", "hf lists no hosts (given 'hf'); write one host per line"),
        ("# c\n", "hf lists no hosts (given 'hf'); write one host per line"),
        ("a:0\n", f"bad slot count in hf line 1 (given 'a:0'); {HINT}"),
        ("a:b:4\n", f"bad slot count in hf line 1 (given 'a:b:4'); {HINT}"),  # the first ':' splits
        ("a slots=x\n", f"bad entry in hf line 1 (given 'a slots=x'); {HINT}"),
        ("a\nb slots=0 \n", f"bad entry in hf line 2 (given 'b slots=0'); {HINT}"),
        ("a! \n", "bad host name in hf line 1 (given 'a!'); host names are letters, digits, '.', '-' and '_'"),
    ],
)
def test_hostfile_errors_in_full(text: str, line: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_hostfile(text, "hf")
    assert info.value.line() == line


def test_one_slot_is_a_slot_count_and_everything_after_the_first_hash_is_a_comment() -> None:
    assert parse_hostfile("a:1\nb:1\n") == HostSlots(("a", "b"), (1, 1))
    assert parse_hostfile("a slots=1\nb max_slots=2\n") == HostSlots(("a", "b"), (1, 2))
    assert parse_hostfile("a # one # two\nb:2\n") == HostSlots(("a", "b"), (1, 2))


def test_read_hostfile_errors_in_full(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    lines = {}
    for name in ("missing", "d", "bin"):
        with pytest.raises(SpecError) as info:
            read_hostfile(tmp_path / name)
        lines[name] = info.value.line()
    assert (
        lines["missing"]
        == f"hostfile not found (given {str(tmp_path / 'missing')!r}); give an existing file with one host per line"
    )
    assert lines["d"] == f"hostfile is not readable (given {str(tmp_path / 'd')!r}); IsADirectoryError"
    assert lines["bin"] == f"hostfile is not readable (given {str(tmp_path / 'bin')!r}); UnicodeDecodeError"


def test_nodelist_errors_in_full() -> None:
    with pytest.raises(SchedulerError) as info:
        expand_nodelist("nid[1-")
    assert info.value.line() == "cannot read SLURM_JOB_NODELIST (given 'nid[1-'); unbalanced brackets"
    with pytest.raises(SchedulerError) as info:
        expand_nodelist("")
    assert info.value.line() == "SLURM_JOB_NODELIST is empty (given ''); run inside a Slurm allocation"


def test_host_sets_skip_slot_words_and_comments() -> None:
    assert parse_host_set("n1 slots=2 n2", "x") == ("n1", "n2")
    assert parse_host_set("n[1-2]:4 # c # d\nn3", "x") == ("n1", "n2", "n3")
    assert parse_host_set("n2 n1 n2", "x") == ("n2", "n1")


def test_host_set_errors_in_full(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_host_set("n[1-", "--include-hosts")
    assert (
        info.value.line()
        == f"cannot read the host list of --include-hosts: unbalanced brackets (given 'n[1-'); {SET_HINT}"
    )
    with pytest.raises(SpecError) as info:
        parse_host_set("# only", "--include-hosts")
    assert info.value.line() == f"--include-hosts names no hosts (given '# only'); {SET_HINT}"
    (tmp_path / "d").mkdir()
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    (tmp_path / "empty").write_text("")
    cases = {
        f"@{tmp_path / 'missing'}": f"--exclude-hosts file not found (given {str(tmp_path / 'missing')!r}); {SET_HINT}",
        f"{tmp_path / 'd'}": f"--exclude-hosts file is not readable (given {str(tmp_path / 'd')!r}); IsADirectoryError",
        f"@{tmp_path / 'bin'}": f"--exclude-hosts file is not readable (given {str(tmp_path / 'bin')!r}); UnicodeDecodeError",
        f"@{tmp_path / 'empty'}": f"--exclude-hosts file {tmp_path / 'empty'} names no hosts (given ''); {SET_HINT}",
    }
    for value, line in cases.items():
        with pytest.raises(SpecError) as info:
            read_host_set(value, "--exclude-hosts")
        assert info.value.line() == line


def test_read_host_set_reads_a_file_by_at_or_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hs").write_text("n1\nn2:4\n")
    monkeypatch.chdir(tmp_path)
    assert read_host_set("@hs", "--exclude-hosts") == ("n1", "n2")
    assert read_host_set("./hs", "--exclude-hosts") == ("n1", "n2")
    assert read_host_set(str(tmp_path / "hs"), "--exclude-hosts") == ("n1", "n2")
    assert read_host_set("hs", "--exclude-hosts") == ("hs",)  # a bare word is a host


def test_the_default_origin_is_hostfile() -> None:
    with pytest.raises(SpecError) as info:
        parse_hostfile("")
    assert info.value.line() == "hostfile lists no hosts (given 'hostfile'); write one host per line"
