"""Ingest Lambda: the HTTP API's POST /webhook and POST /webhook/{token} routes.

Thin on purpose: wire Powertools, turn the API Gateway event into an HttpRequest, call the service
and map its response. The token and the raw path never reach a log line or a trace.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from ingest.auth import TokenVerifier
from ingest.service import HttpRequest, HttpResponse, IngestService
from shared.lazy_client import LazyClient
from shared.observability import logger, metrics, tracer
from shared.settings import IngestSettings

# Fail fast and let the service spill: a webhook sender will not wait long, and Lambda bills the wait.
_AWS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
# PutEvents runs once per webhook, and botocore's client-side check of its parameters walks every
# entry again: 10-20% of a warm invocation (bench/run.py). Our entries are built here, never from
# input, and EventBridge checks them anyway; a refusal is a ClientError that spills like any other.
EVENTS_CONFIG = _AWS_CONFIG.merge(Config(parameter_validation=False))


@cache
def service() -> IngestService:
    """Built once per execution environment, on the first request (not at import)."""
    settings = IngestSettings.from_env()
    secrets = boto3.client("secretsmanager", config=_AWS_CONFIG)

    def load_secret() -> str:
        value: str = secrets.get_secret_value(SecretId=settings.token_secret_id)["SecretString"]
        return value

    return IngestService(
        settings,
        verifier=TokenVerifier(load_secret),
        events=boto3.client("events", config=EVENTS_CONFIG),
        s3=LazyClient("s3", _AWS_CONFIG),
    )


def to_request(event: dict[str, Any]) -> HttpRequest:
    """The parts of an HTTP API (payload 2.0) event the service reads; header names lower-cased."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    path_parameters = event.get("pathParameters") or {}
    context = event.get("requestContext") or {}
    return HttpRequest(
        body=event.get("body"),
        is_base64=bool(event.get("isBase64Encoded")),
        headers=headers,
        path_token=path_parameters.get("token"),
        request_id=context.get("requestId"),
    )


def to_api_gateway(response: HttpResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": json.dumps(response.body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = to_request(event)
    # Log lines correlate by API Gateway's request id (`requestContext.requestId`, Powertools'
    # API_GATEWAY_HTTP path), read here: a correlation_id_path is a JMESPath search on every
    # invocation, about a tenth of a warm one in a profile.
    logger.set_correlation_id(request.request_id)
    return to_api_gateway(service().handle(request))
