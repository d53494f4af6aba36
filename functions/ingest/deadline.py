"""How long ingest may take: an answer within ANSWER_WITHIN_S, whatever the function's Timeout.

Ebbot never retries, and a sender that gets no answer in time has lost the webhook, so ingest
answers within a fixed budget even when a dependency hangs. botocore has no per-call deadline: its
clients here make one attempt each, bounded by their connect and read timeouts (ATTEMPT_S at
most), and the service retries itself, only while the invocation's budget still holds another
attempt and what must follow it (the spill after a bus that did not answer: SPILL_RESERVE_S).
The budget is ANSWER_WITHIN_S, or less when Lambda's own remaining time is shorter.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol

from botocore.config import Config

from shared.storage.bus import is_transient

# What the handler itself may spend, leaving room for a cold start's init and the way back.
ANSWER_WITHIN_S = 8.0
# Kept free before Lambda's own timeout, for the answer to be written.
LAMBDA_MARGIN_S = 1.0
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
# The longest one attempt of one call can take.
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S
# What a spill needs after the bus did not take an event: one S3 attempt.
SPILL_RESERVE_S = ATTEMPT_S
# A pause between attempts, with jitter, so that many sandboxes do not retry in step.
RETRY_PAUSE_S = 0.1
# One attempt per call; the service retries within the budget (retry_within).
AWS_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"mode": "standard", "total_max_attempts": 1},
)


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class Deadline:
    """The end of one invocation's budget, on a monotonic clock."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + budget_s

    @classmethod
    def for_invocation(cls, context: LambdaContextLike | None) -> Deadline:
        budget = ANSWER_WITHIN_S
        if context is not None:
            budget = min(budget, context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_S)
        return cls(budget)

    def remaining(self) -> float:
        return self._end - self._clock()

    def allows(self, seconds: float) -> bool:
        """Whether `seconds` of work still end before the deadline."""
        return self.remaining() >= seconds

    def another_attempt(self, reserve_s: float = 0.0) -> Callable[[], bool]:
        """Asks, before each retry, whether one more attempt and `reserve_s` still fit."""
        return lambda: self.allows(ATTEMPT_S + RETRY_PAUSE_S + reserve_s)


def retry_within[T](
    call: Callable[[], T],
    may_retry: Callable[[], bool],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, attempted again after a transient failure for as long as `may_retry()` says
    another attempt fits; the last failure is raised."""
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc) or not may_retry():
                raise
        sleep(random.uniform(0, RETRY_PAUSE_S))  # noqa: S311 (jitter, not crypto)
