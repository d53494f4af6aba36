"""The one place where logger, tracer and metrics are made; every function imports them from here.

- logger: POWERTOOLS_SERVICE_NAME names the function, POWERTOOLS_LOG_LEVEL (or LOG_LEVEL) the level;
  POWERTOOLS_LOGGER_LOG_EVENT stays false (events carry chat content, which is personal data).
- tracer: POWERTOOLS_TRACE_DISABLED turns it off (it is off outside Lambda anyway); handlers use
  capture_response=False and POWERTOOLS_TRACER_CAPTURE_ERROR=false keeps payloads out of traces.
- metrics: POWERTOOLS_METRICS_NAMESPACE (set once in template.yaml Globals), dimension `service`.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
