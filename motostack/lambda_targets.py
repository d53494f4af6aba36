"""EventBridge rule targets that are Lambda functions, for moto (which raises NotImplementedError on them).

moto still decides which rules match (its own pattern matcher, unchanged) and still delivers to
every other kind of target itself. Only the step moto lacks is replaced: for a target whose ARN is
a Lambda function, the matched event is handed to `dispatch(rule_arn, target, event)` instead.

- `patch_lambda_targets(dispatch)` installs that, and undoes it when used as a context manager
  (the tests collect deliveries in a list this way).
- `Forwarder` is the local stack's `dispatch`: it invokes the function asynchronously over HTTP
  (Lambda's Invoke API, InvocationType Event, served by each function's worker), and applies the
  target's retry policy and dead-letter queue when that delivery fails, as EventBridge does.

This replaces an earlier design that pointed each Lambda target at an SQS queue polled by the
function: every event then cost three more requests in moto (send, receive, delete), and moto's
single busy core was the whole pipeline's limit (docs/decisions.md, 2026-11-28).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import importlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

Dispatch = Callable[[str, dict[str, Any], dict[str, Any]], None]

INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


def is_lambda_arn(arn: str) -> bool:
    parts = arn.split(":")
    return len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function"


def delivered_event(event: dict[str, Any], target: dict[str, Any]) -> Any:
    """The payload EventBridge gives a target: the event itself, or what Input / InputPath /
    InputTransformer make of it. `event` is moto's matched event (time as epoch seconds)."""
    if "Input" in target:
        return json.loads(target["Input"])
    out = {key: value for key, value in event.items() if key != "ingestion-time"}
    when = out.get("time")
    if isinstance(when, int | float) or (isinstance(when, str) and when.replace(".", "", 1).isdigit()):
        out["time"] = datetime.fromtimestamp(float(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if "InputPath" in target:
        jsonpath: Any = importlib.import_module("jsonpath_ng.ext")
        matches = jsonpath.parse(target["InputPath"]).find(out)
        return matches[0].value if matches else None
    if "InputTransformer" in target:
        moto_events: Any = importlib.import_module("moto.events.utils")
        transformer = target["InputTransformer"]
        return moto_events.EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event={**out, "ingestion-time": event.get("ingestion-time")},
        )
    return out


@contextlib.contextmanager
def patch_lambda_targets(dispatch: Dispatch) -> Iterator[None]:
    """While active, moto hands events matched for Lambda targets to `dispatch`."""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        functions = [t for t in self.targets if is_lambda_arn(t["Arn"])]
        if not functions:
            original(self, original_event, transform_input)
            return
        if not self.event_pattern.matches_event(original_event):
            return
        for target in functions:
            dispatch(self.arn, target, delivered_event(dict(original_event), target))
        others = [t for t in self.targets if not is_lambda_arn(t["Arn"])]
        if others:
            # moto reads self.targets; requests are applied one at a time (motostack.moto_server).
            everything, self.targets = self.targets, others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = everything

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    try:
        yield
    finally:
        Rule.send_to_targets = original  # type: ignore[method-assign]


# --- the local stack's delivery: asynchronous invocation over HTTP ------------------------------------


class DeliveryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    rule_arn: str = field(compare=False)
    target: dict[str, Any] = field(compare=False)
    event: Any = field(compare=False)
    first_try: float = field(compare=False)
    body: bytes = field(default=b"", compare=False)  # serialised by a delivery thread, once
    attempts: int = field(default=0, compare=False)
    last_error: DeliveryError | None = field(default=None, compare=False)


class Routes:
    """Function ARN -> the base URL of its worker's Invoke API, from a JSON file the launcher writes
    once the workers listen. Re-read when an ARN is missing (a function may come up later)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._routes: dict[str, str] = {}
        self._mtime = 0.0

    def url(self, function_arn: str) -> str | None:
        arn = ":".join(function_arn.split(":")[:7])  # no version or alias qualifier
        if arn not in self._routes and self._path is not None:
            with contextlib.suppress(OSError, ValueError):
                mtime = self._path.stat().st_mtime
                if mtime != self._mtime:
                    self._routes, self._mtime = json.loads(self._path.read_text()), mtime
        return self._routes.get(arn)


class Forwarder:
    """EventBridge -> Lambda delivery for the local stack.

    `dispatch` only queues (it runs inside moto's put_events); `threads` threads invoke. A delivery
    that fails (no such function, a worker that does not answer, a 5xx or 429) is retried with
    exponential backoff within the target's RetryPolicy (MaximumRetryAttempts, default 185;
    MaximumEventAgeInSeconds, default 86400), then sent to the target's DeadLetterConfig queue with
    the attributes EventBridge sets. `retry_delay_s` is the first backoff (EventBridge's is about
    a second; the local default is shorter so a broken setup shows in the DLQ soon).
    """

    def __init__(
        self,
        routes: Routes,
        dead_letter: Callable[[str, str, dict[str, Any]], None],
        *,
        threads: int = 4,
        retry_delay_s: float = 0.2,
        max_backoff_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._routes = routes
        self._dead_letter = dead_letter
        self._retry_delay_s = retry_delay_s
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._in_flight = 0
        self._counts = {"delivered": 0, "retried": 0, "dead_lettered": 0}
        self._local = threading.local()
        for n in range(threads):
            threading.Thread(target=self._run, name=f"lambda-targets-{n}", daemon=True).start()

    # Called by moto inside put_events / a replay, holding moto's lock: queue only, serialise later.
    def dispatch(self, rule_arn: str, target: dict[str, Any], event: Any) -> None:
        now = time.monotonic()
        with self._cv:
            heapq.heappush(self._heap, _Delivery(now, next(self._seq), rule_arn, target, event, now))
            self._cv.notify()

    def stats(self) -> dict[str, int]:
        with self._cv:
            return {"pending": len(self._heap) + self._in_flight, **self._counts}

    def _next(self) -> _Delivery:
        with self._cv:
            while True:
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._heap)
                    self._cv.wait(wait)
                else:
                    self._cv.wait()

    def _run(self) -> None:
        while True:
            delivery = self._next()
            outcome = "delivered"
            try:
                delivery.attempts += 1
                delivery.body = delivery.body or json.dumps(delivery.event).encode()
                self._invoke(delivery)
            except DeliveryError as exc:
                delivery.last_error = exc
                outcome = self._after_failure(delivery)
            except Exception as exc:  # never lose the thread, or the event
                delivery.last_error = DeliveryError("SDK_CLIENT_ERROR", type(exc).__name__)
                outcome = self._after_failure(delivery)
            with self._cv:
                self._in_flight -= 1
                self._counts[outcome] += 1

    def _after_failure(self, delivery: _Delivery) -> str:
        policy = delivery.target.get("RetryPolicy", {})
        retries_left = delivery.attempts <= int(policy.get("MaximumRetryAttempts", 185))
        age_s = time.monotonic() - delivery.first_try
        backoff = min(self._max_backoff_s, self._retry_delay_s * 2 ** (delivery.attempts - 1))
        if retries_left and age_s + backoff <= int(policy.get("MaximumEventAgeInSeconds", 86400)):
            delivery.due = time.monotonic() + backoff
            with self._cv:
                heapq.heappush(self._heap, delivery)
                self._cv.notify()
            return "retried"
        self._send_to_dlq(delivery)
        return "dead_lettered"

    def _send_to_dlq(self, delivery: _Delivery) -> None:
        dlq = delivery.target.get("DeadLetterConfig", {}).get("Arn")
        if not dlq:
            return  # EventBridge drops it too
        error = delivery.last_error or DeliveryError("SDK_CLIENT_ERROR", "unknown")
        attributes = {
            "RULE_ARN": delivery.rule_arn,
            "TARGET_ARN": delivery.target["Arn"],
            "ERROR_CODE": error.code,
            "ERROR_MESSAGE": str(error),
            "RETRY_ATTEMPTS": str(delivery.attempts - 1),
        }
        self._dead_letter(
            dlq,
            delivery.body.decode(),
            {
                k: {"DataType": "Number" if k == "RETRY_ATTEMPTS" else "String", "StringValue": v}
                for k, v in attributes.items()
            },
        )

    def _invoke(self, delivery: _Delivery) -> None:
        arn = delivery.target["Arn"]
        base = self._routes.url(arn)
        if base is None:
            raise DeliveryError("RESOURCE_NOT_FOUND", f"no function {arn} in the local stack")
        connections: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        path = INVOKE_PATH.format(name=quote(arn, safe=""))
        for fresh in (False, True):  # a kept-alive connection the worker closed gets one new try
            connection = connections.get(base)
            if connection is None or fresh:
                if connection is not None:
                    connection.close()
                parts = urlsplit(base)
                connection = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=self._timeout_s
                )
                connections[base] = connection
            try:
                connection.request(
                    "POST",
                    path,
                    body=delivery.body,
                    headers={"content-type": "application/json", "x-amz-invocation-type": "Event"},
                )
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connections.pop(base, None)
                if fresh:
                    raise DeliveryError("SDK_CLIENT_ERROR", f"{type(exc).__name__}") from None
                continue
            if response.status == 202:
                return
            code = "THROTTLING" if response.status == 429 else "SDK_CLIENT_ERROR"
            raise DeliveryError(code, f"Invoke answered {response.status}")


def forwarder_from_env(dead_letter: Callable[[str, str, dict[str, Any]], None]) -> Forwarder:
    routes = os.environ.get("MOTOSTACK_ROUTES")
    return Forwarder(
        Routes(Path(routes) if routes else None),
        dead_letter,
        retry_delay_s=float(os.environ.get("MOTOSTACK_RETRY_DELAY", "0.2")),
    )
