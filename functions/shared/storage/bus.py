"""Put events on the bus without losing any: entry-level retries for what AWS says is transient.

PutEvents can succeed as a call and still fail some entries (FailedEntryCount, per-entry ErrorCode).
Throttling and internal errors are retried with exponential backoff and jitter, and only the failed
entries are re-sent; anything else (MalformedDetail, AccessDenied...) is final and reported as
rejected. A call that fails as a whole (after botocore's own retries) raises BusUnavailableError.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

RETRYABLE_ENTRY_ERRORS = frozenset(
    {"ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"}
)
# PutEvents takes at most 10 entries per call.
MAX_BATCH = 10


class BusUnavailableError(Exception):
    """The bus could not be reached or kept failing transiently: the caller must spill."""


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What became of one entry: published (with its EventBridge id), rejected, or still failing."""

    event_id: str | None = None
    error_code: str | None = None
    transient: bool = False

    @property
    def published(self) -> bool:
        return self.event_id is not None


class BusPublisher:
    def __init__(
        self,
        events: Any,
        *,
        max_attempts: int = 4,
        base_delay_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._events = events
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep
        self.retries = 0  # entries re-sent, for metrics

    def put(self, entries: Sequence[dict[str, Any]]) -> list[EntryResult]:
        """One result per entry, in order. Raises BusUnavailableError if the API itself fails."""
        results: list[EntryResult | None] = [None] * len(entries)
        for start in range(0, len(entries), MAX_BATCH):
            self._put_batch(entries, list(range(start, min(start + MAX_BATCH, len(entries)))), results)
        return [r if r is not None else EntryResult(error_code="Unknown", transient=True) for r in results]

    def _put_batch(
        self, entries: Sequence[dict[str, Any]], pending: list[int], results: list[EntryResult | None]
    ) -> None:
        for attempt in range(self._max_attempts):
            if attempt:
                self.retries += len(pending)
                # Full jitter: spread retries of concurrent invocations apart.
                self._sleep(random.uniform(0, self._base_delay_s * 2**attempt))  # noqa: S311
            try:
                response = self._events.put_events(Entries=[entries[i] for i in pending])
            except (ClientError, BotoCoreError) as exc:
                raise BusUnavailableError(type(exc).__name__) from exc
            still_failing = []
            for index, outcome in zip(pending, response["Entries"], strict=True):
                code = outcome.get("ErrorCode")
                if not code and outcome.get("EventId"):
                    results[index] = EntryResult(event_id=outcome["EventId"])
                elif code in RETRYABLE_ENTRY_ERRORS or not code:
                    results[index] = EntryResult(error_code=code or "Unknown", transient=True)
                    still_failing.append(index)
                else:
                    results[index] = EntryResult(error_code=code)
            pending = still_failing
            if not pending:
                return
