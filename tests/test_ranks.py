"""ezpz.ranks: who am I, from each launcher's own variables (pure: environments are dicts here).

The variables are the ones each launcher really sets (PALS, MPICH hydra, Open
MPI, srun, torchrun); no launcher runs in this file (tests/test_launch_real.py
does that).
"""

from __future__ import annotations

import pytest

from ezpz.errors import DistError
from ezpz.ranks import RankInfo, rank_info, torchrun_env


def info(**environ: str) -> tuple[int, int, int, int, str]:
    got = rank_info(environ)
    return got.rank, got.world_size, got.local_rank, got.local_world_size, got.source


def test_started_by_nothing_is_rank_0_of_1() -> None:
    assert info() == (0, 1, 0, 1, "default")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (  # PALS (Aurora, Polaris): PMI_* and PALS_*
            {"PMI_RANK": "13", "PMI_SIZE": "24", "PALS_LOCAL_RANKID": "1", "PALS_LOCAL_SIZE": "12"},
            (13, 24, 1, 12, "PMI_RANK"),
        ),
        (  # MPICH hydra
            {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"},
            (3, 4, 1, 2, "PMI_RANK"),
        ),
        (  # Open MPI
            {
                "OMPI_COMM_WORLD_RANK": "5",
                "OMPI_COMM_WORLD_SIZE": "8",
                "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
            },
            (5, 8, 1, 4, "OMPI_COMM_WORLD_RANK"),
        ),
        (  # srun, heterogeneous tasks per node
            {"SLURM_PROCID": "2", "SLURM_NTASKS": "6", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "2(x3)"},
            (2, 6, 0, 2, "SLURM_PROCID"),
        ),
        (  # srun with a per-node list
            {"SLURM_PROCID": "4", "SLURM_NTASKS": "5", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "4,1"},
            (4, 5, 0, 4, "SLURM_PROCID"),
        ),
        (  # PMIx rank only (no size anywhere): world of 1 would put rank 3 outside, see below
            {"PMIX_RANK": "0"},
            (0, 1, 0, 1, "PMIX_RANK"),
        ),
        (  # the shim's own hint for the node size
            {"PMI_RANK": "1", "PMI_SIZE": "4", "EZPZ_LOCAL_WORLD_SIZE": "2", "MPI_LOCALRANKID": "1"},
            (1, 4, 1, 2, "PMI_RANK"),
        ),
    ],
    ids=["pals", "hydra", "openmpi", "srun-hetero", "srun-list", "pmix", "ezpz-hint"],
)
def test_each_launchers_variables(environ: dict[str, str], expected: tuple) -> None:
    assert info(**environ) == expected


def test_torchruns_variables_win_over_the_launchers() -> None:
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    environ |= {"PMI_RANK": "7", "PMI_SIZE": "8", "MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "4"}
    assert info(**environ) == (1, 2, 1, 2, "RANK")


def test_blank_values_are_skipped() -> None:
    assert info(RANK=" ", PMI_RANK="2", PMI_SIZE=" 4 ") == (2, 4, 0, 4, "PMI_RANK")


def test_defaults_without_local_variables() -> None:
    # A world without local facts: one node holding every rank; local rank 0.
    assert info(PMI_RANK="2", PMI_SIZE="4") == (2, 4, 0, 4, "PMI_RANK")
    # A rank with no world size at all is rank 0 of 1, its own local rank.
    assert info(RANK="0") == (0, 1, 0, 1, "RANK")
    assert info(RANK="0", WORLD_SIZE="1") == (0, 1, 0, 1, "RANK")


def test_local_world_is_never_larger_than_the_world() -> None:
    assert info(PMI_RANK="1", PMI_SIZE="2", MPI_LOCALRANKID="1", MPI_LOCALNRANKS="8") == (1, 2, 1, 2, "PMI_RANK")


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"PMI_RANK": "x"}, "PMI_RANK is not an integer (given 'x'); unset it or fix the launcher"),
        ({"WORLD_SIZE": "0"}, "world size must be at least 1 (given 0); read from WORLD_SIZE"),
        ({"PMI_SIZE": "-2", "PMI_RANK": "0"}, "world size must be at least 1 (given -2); read from PMI_SIZE"),
        (
            {"RANK": "4", "WORLD_SIZE": "4"},
            "rank is outside the world (given 'rank=4 world_size=4'); rank read from RANK; "
            "fix or unset the stale variable",
        ),
        (
            {"PMIX_RANK": "3"},
            "rank is outside the world (given 'rank=3 world_size=1'); rank read from PMIX_RANK; "
            "fix or unset the stale variable",
        ),
        ({"RANK": "-1", "WORLD_SIZE": "2"}, "rank is outside the world (given 'rank=-1 world_size=2')"),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
            "local rank is outside the node (given 'local_rank=2 local_world_size=2'); "
            "fix or unset the stale LOCAL_RANK/LOCAL_WORLD_SIZE variables",
        ),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "-1"},
            "local rank is outside the node (given 'local_rank=-1 local_world_size=4')",
        ),
    ],
)
def test_broken_environments_are_one_dist_error_line(environ: dict[str, str], line: str) -> None:
    with pytest.raises(DistError) as err:
        rank_info(environ)
    assert err.value.line().startswith(line), err.value.line()


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_a_zero_local_world_is_refused(local_rank: str) -> None:
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": local_rank, "LOCAL_WORLD_SIZE": "0"}
    with pytest.raises(DistError, match="local rank is outside the node"):
        rank_info(environ)


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setenv("PMI_SIZE", "3")
    assert rank_info().rank == 1 and rank_info().world_size == 3


def test_torchrun_env() -> None:
    assert torchrun_env(RankInfo(3, 8, 1, 4, "PMI_RANK")) == {
        "RANK": "3",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
    }
