"""When and how long to wait before trying a registry request again.

Retried: 408, 429, 500, 502, 503, 504, connection failures, resets and timeouts.
Waits grow exponentially with jitter; a `Retry-After` (seconds or HTTP date) is
honoured. Attempts and total time are both bounded: a `Retry-After` longer than
the time left ends the retries at once instead of sleeping past the budget.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # including the first
    initial_delay: float = 0.25
    max_delay: float = 20.0
    total_timeout: float = 120.0  # seconds from the first attempt; no retry starts after it

    def backoff(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """Wait after the n-th failure (1-based): "equal jitter" in [d/2, d], d = initial·2^(n-1)."""
        ceiling = min(self.max_delay, self.initial_delay * (2 ** max(0, failures - 1)))
        return ceiling / 2 + rng() * ceiling / 2


NO_RETRIES = RetryPolicy(max_attempts=1)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class RetryBudget:
    """Tracks one logical request's attempts against a RetryPolicy."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._started = clock()
        self.failures = 0
        self.gave_up_reason = ""

    def next_delay(self, retry_after: Optional[float] = None) -> Optional[float]:
        """Records a failure; the seconds to wait before the next attempt, or None to give up."""
        self.failures += 1
        if self.failures >= self.policy.max_attempts:
            self.gave_up_reason = f"after {self.failures} attempts"
            return None
        remaining = self.policy.total_timeout - (self._clock() - self._started)
        delay = self.policy.backoff(self.failures)
        if retry_after is not None:
            delay = retry_after * (1.0 + 0.1 * random.random())  # a little jitter, never earlier
        if delay > remaining:
            if retry_after is not None and retry_after > remaining:
                self.gave_up_reason = (
                    f"the registry asked to retry after {retry_after:.0f}s, "
                    f"more than the {self.policy.total_timeout:.0f}s retry budget"
                )
            else:
                self.gave_up_reason = f"after {self.failures} attempts in {self.policy.total_timeout:.0f}s"
            return None
        return delay
