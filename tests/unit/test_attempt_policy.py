"""The attempt policy as properties: a wait is given only while attempts remain and only when an attempt
still fits before the deadline after it; Retry-After is taken as said, and otherwise the wait is full jitter
under the exponential ceiling."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.attempt_policy import AttemptPolicy

POLICY = AttemptPolicy(max_attempts=5, backoff_base_seconds=0.2, backoff_cap_seconds=10.0, min_attempt_seconds=0.2)

attempts_made = st.integers(1, 8)
retry_afters = st.none() | st.floats(0, 3600, allow_nan=False)
seconds_left = st.floats(-10, 900, allow_nan=False)


@given(attempts_made, retry_afters, seconds_left)
def test_a_wait_is_given_only_while_attempts_remain_and_one_fits_after_it(
    made: int, retry_after: float | None, left: float
) -> None:
    # When the policy is asked for the wait before the next attempt
    wait = POLICY.wait_before_next(made, retry_after, left)
    # Then there is none once max_attempts were made, and any wait leaves time for an attempt after it
    if made >= POLICY.max_attempts:
        assert wait is None
    if wait is not None:
        assert wait + POLICY.min_attempt_seconds <= left


@given(st.integers(1, 4), st.floats(0, 60, allow_nan=False))
def test_retry_after_is_the_wait_when_it_fits(made: int, retry_after: float) -> None:
    # Given plenty of time left
    # When the endpoint said Retry-After, then that is the wait
    assert POLICY.wait_before_next(made, retry_after, seconds_left=3600) == retry_after


@given(st.integers(1, 4))
def test_backoff_is_full_jitter_under_the_exponential_ceiling(made: int) -> None:
    # Given no Retry-After and plenty of time, the wait lies between 0 and base * 2**(made - 1), capped
    wait = POLICY.wait_before_next(made, None, seconds_left=3600)
    ceiling = min(POLICY.backoff_cap_seconds, POLICY.backoff_base_seconds * 2 ** (made - 1))
    assert wait is not None
    assert 0 <= wait <= ceiling
