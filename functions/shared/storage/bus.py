"""Put events on the bus without losing any: retries for what AWS says is transient, and only then.

PutEvents can succeed as a call and still fail some entries (FailedEntryCount, per-entry ErrorCode).
Throttled and internally failed entries are sent again, alone, with backoff and jitter; anything
else (MalformedDetail, AccessDenied...) is final and reported as refused. A call that fails as a
whole is attempted again when the failure is transient; otherwise, or when the caller's time is up,
it raises BusUnavailableError. Every retry first asks the caller's `may_retry` whether it fits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

RETRYABLE_ENTRY_ERRORS = frozenset(
    {"ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"}
)
# AWS's answers to a whole call that a second attempt may change: throttling and its own faults.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalException",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
TRANSIENT_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
# PutEvents takes at most 10 entries per call.
MAX_BATCH = 10


def is_transient(exc: BaseException) -> bool:
    """A failure another attempt may not meet: no connection, no answer in time, throttling, or a
    fault of the service (5xx)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES or int(status or 0) >= 500
    return False


class BusUnavailableError(Exception):
    """The bus could not be reached, kept failing, or refused the call: the caller must spill."""


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What became of one entry: published (with its EventBridge id), refused, or still failing."""

    event_id: str | None = None
    error_code: str | None = None
    transient: bool = False

    @property
    def published(self) -> bool:
        return self.event_id is not None


def _always() -> bool:
    return True


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

    def put(
        self, entries: Sequence[dict[str, Any]], *, may_retry: Callable[[], bool] = _always
    ) -> list[EntryResult]:
        """One result per entry, in order. Raises BusUnavailableError if the call itself fails."""
        results: list[EntryResult | None] = [None] * len(entries)
        for start in range(0, len(entries), MAX_BATCH):
            batch = list(range(start, min(start + MAX_BATCH, len(entries))))
            self._put_batch(entries, batch, results, may_retry)
        return [r if r is not None else EntryResult(error_code="Unknown", transient=True) for r in results]

    def _put_batch(
        self,
        entries: Sequence[dict[str, Any]],
        pending: list[int],
        results: list[EntryResult | None],
        may_retry: Callable[[], bool],
    ) -> None:
        for attempt in range(self._max_attempts):
            if attempt:
                if not may_retry():
                    return
                self.retries += len(pending)
                # Full jitter: spread retries of concurrent invocations apart.
                self._sleep(random.uniform(0, self._base_delay_s * 2**attempt))  # noqa: S311
            try:
                response = self._events.put_events(Entries=[entries[i] for i in pending])
            except (ClientError, BotoCoreError) as exc:
                if is_transient(exc) and attempt + 1 < self._max_attempts:
                    for index in pending:
                        results[index] = EntryResult(error_code=type(exc).__name__, transient=True)
                    continue
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
