from __future__ import annotations

import email.utils

from oci_cache.oci.http_retry import RetryBudget, RetryPolicy, parse_retry_after


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=5.0)
    assert policy.backoff(1, rng=lambda: 0.0) == 0.5 and policy.backoff(1, rng=lambda: 1.0) == 1.0
    assert policy.backoff(3, rng=lambda: 1.0) == 4.0
    assert policy.backoff(10, rng=lambda: 1.0) == 5.0


def test_budget_bounds_attempts() -> None:
    budget = RetryBudget(RetryPolicy(max_attempts=3, initial_delay=0.01, total_timeout=100))
    assert budget.next_delay() is not None
    assert budget.next_delay() is not None
    assert budget.next_delay() is None
    assert "3 attempts" in budget.gave_up_reason


def test_budget_honours_retry_after_but_not_past_the_total_time() -> None:
    clock = [0.0]
    budget = RetryBudget(RetryPolicy(max_attempts=10, total_timeout=60), clock=lambda: clock[0])
    delay = budget.next_delay(retry_after=5)
    assert delay is not None and 5.0 <= delay <= 5.5
    clock[0] = 50.0
    assert budget.next_delay(retry_after=3600) is None
    assert "retry after 3600s" in budget.gave_up_reason
