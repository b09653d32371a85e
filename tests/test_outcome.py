"""ezpz.launch.outcome: what the end of an attempt means (exit status, retry, backoff), without processes.

tests/test_execute.py checks the same through real launchers; these cases are
the whole rule, fast enough for mutation testing.
"""

from __future__ import annotations

import signal

import pytest

from ezpz.launch.outcome import MAX_BACKOFF, STOPPED_EXIT, backoff, exit_status, retry, signal_exit


@pytest.mark.parametrize(("code", "status"), [(0, 0), (1, 1), (7, 7), (124, 124), (255, 255)])
def test_a_launcher_exit_code_is_the_status(code: int, status: int) -> None:
    assert exit_status(code, warned=False) == status


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGHUP])
def test_a_launcher_killed_by_a_signal_is_128_plus_the_signal(sig: signal.Signals) -> None:
    assert exit_status(-int(sig), warned=False) == 128 + int(sig)
    assert exit_status(-int(sig), warned=True) == 128 + int(sig)


def test_success_after_the_warning_is_stopped_and_failure_stays_failure() -> None:
    assert exit_status(0, warned=True) == STOPPED_EXIT == 75
    assert exit_status(3, warned=True) == 3


def test_a_signal_to_ezpz_launch_is_128_plus_it() -> None:
    assert signal_exit(signal.SIGINT) == 130
    assert signal_exit(signal.SIGTERM) == 143


def test_backoff_doubles_from_one_second_up_to_a_minute() -> None:
    assert [backoff(a) for a in range(1, 10)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert MAX_BACKOFF == 60.0


def test_a_failed_attempt_is_retried_until_the_retries_are_spent() -> None:
    assert retry(1, 0, 2, interrupted=False)
    assert retry(124, 1, 2, interrupted=False)
    assert not retry(1, 2, 2, interrupted=False)  # the last retry
    assert not retry(1, 0, 0, interrupted=False)  # no retries


@pytest.mark.parametrize("code", [0, STOPPED_EXIT])
def test_success_and_a_stop_at_the_warning_are_never_retried(code: int) -> None:
    assert not retry(code, 0, 3, interrupted=False)


def test_an_interrupted_attempt_is_never_retried() -> None:
    assert not retry(130, 0, 3, interrupted=True)
    assert not retry(1, 0, 3, interrupted=True)
