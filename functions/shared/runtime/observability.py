"""The one place where logger, tracer and metrics are made; every function imports them from here.

- logger: POWERTOOLS_SERVICE_NAME names the function, POWERTOOLS_LOG_LEVEL (or LOG_LEVEL) the level;
  Lambda's AWS_LAMBDA_LOG_LEVEL (the template's ApplicationLogLevel) wins where it is set.
  POWERTOOLS_LOGGER_LOG_EVENT stays false (events carry chat content, which is personal data).
- tracer: Powertools' Tracer when tracing is on. POWERTOOLS_TRACE_DISABLED=true (the template sets it
  when its Tracing parameter is Disabled, and the local stack and tests set it) gives a stand-in
  whose decorators add nothing: Powertools' Tracer imports and configures the X-Ray SDK even when
  disabled, a large part of a cold start (docs/decisions.md, "Tracing and log levels"). Handlers
  use capture_response=False and POWERTOOLS_TRACER_CAPTURE_ERROR=false keeps payloads out of traces.
- the AWS SDK's own loggers are held at WARNING whatever the level: at LogLevel=DEBUG Lambda's
  runtime sets the root logger to DEBUG, and botocore would then log every request and response
  body (a GetSecretValue answer is the token; a PutEvents detail is the chat).
- metrics: POWERTOOLS_METRICS_NAMESPACE (set once in template.yaml Globals), dimension `service`.
  Only what AWS's own metrics cannot show is counted: refusals, spills, claim checks, duplicates,
  superseded updates, messages filled in from transcripts. Volume is in API Gateway's Count,
  Lambda's Invocations and each rule's MatchedEvents, so a webhook on the happy path writes no
  metric line (and pays neither its log bytes nor its serialisation); Powertools' warning about an
  invocation without metrics is therefore expected, and silenced.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

TRUTHY = frozenset({"1", "y", "yes", "t", "true", "on"})


class HandlerTracer(Protocol):
    """What the handlers use of a tracer: `@tracer.capture_lambda_handler(capture_response=False)`."""

    def capture_lambda_handler[H: Callable[..., Any]](
        self, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[H], H]: ...


class TracingOff:
    """That part of Powertools' Tracer, doing nothing, without importing the X-Ray SDK."""

    def capture_lambda_handler[H: Callable[..., Any]](
        self, *, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Callable[[H], H]:
        def unchanged(handler: H) -> H:
            return handler

        return unchanged


def tracing_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """POWERTOOLS_TRACE_DISABLED as Powertools reads it (its truthy spellings)."""
    return environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in TRUTHY


def make_tracer() -> HandlerTracer:
    if tracing_disabled():
        return TracingOff()
    from aws_lambda_powertools import Tracer

    return cast("HandlerTracer", Tracer())


# Their DEBUG lines carry request and response bodies: tokens and chat content.
SDK_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")
for _name in SDK_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)

logger = Logger()
tracer = make_tracer()
metrics = Metrics()
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def in_threads[T, R](fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """`fn` over `items` on up to `workers` threads, results in order; the first error is raised once
    every call has ended. When tracing, each thread is handed the invocation's X-Ray entity, so its
    calls nest under the handler (X-Ray's Lambda mode would give each thread a facade of its own)."""
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    entity = None
    if not isinstance(tracer, TracingOff):
        from aws_xray_sdk.core import xray_recorder

        entity = xray_recorder.get_trace_entity()

    def run(item: T) -> R:
        if entity is None:
            return fn(item)
        xray_recorder.set_trace_entity(entity)
        try:
            return fn(item)
        finally:
            xray_recorder.clear_trace_entities()

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(run, item) for item in items]
    return [future.result() for future in futures]


__all__ = ["MetricUnit", "in_threads", "logger", "metrics", "tracer"]
