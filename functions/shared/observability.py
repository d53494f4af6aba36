"""The one place where logger, tracer and metrics are made; every function imports them from here.

- logger: POWERTOOLS_SERVICE_NAME names the function, POWERTOOLS_LOG_LEVEL (or LOG_LEVEL) the level;
  Lambda's AWS_LAMBDA_LOG_LEVEL (the template's ApplicationLogLevel) wins where it is set.
  POWERTOOLS_LOGGER_LOG_EVENT stays false (events carry chat content, which is personal data).
- tracer: Powertools' Tracer when tracing is on. POWERTOOLS_TRACE_DISABLED=true (the template sets it
  when its Tracing parameter is Disabled, and the local stack and tests set it) gives a stand-in
  whose decorators add nothing: Powertools' Tracer imports and configures the X-Ray SDK even when
  disabled, about a quarter of a cold start (bench/run.py). Handlers use capture_response=False and
  POWERTOOLS_TRACER_CAPTURE_ERROR=false keeps payloads out of traces.
- metrics: POWERTOOLS_METRICS_NAMESPACE (set once in template.yaml Globals), dimension `service`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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


logger = Logger()
tracer = make_tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
