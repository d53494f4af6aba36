"""Ingest Lambda: the HTTP API's POST /webhook and POST /webhook/{token} routes.

Thin on purpose: wire Powertools, turn the API Gateway event into an HttpRequest, call the service,
and map what it returns or raises to an HTTP answer, here and nowhere else (STATUS). The token and
the raw path never reach a log line or a trace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from ingest.auth import TokenVerifier
from ingest.deadline import AWS_CONFIG, Deadline
from ingest.errors import (
    AuthUnavailableError,
    BodyTooLargeError,
    BotNotAllowedError,
    NotAuthenticatedError,
    NotDurableError,
    UnsupportedEncodingError,
    WebhookError,
    WebhookInvalidError,
)
from ingest.request import HttpRequest
from ingest.service import IngestService
from shared.runtime.clients import LazyClient
from shared.runtime.observability import logger, metrics, tracer
from shared.runtime.settings import IngestSettings
from shared.storage.privacy import load_privacy_key

# botocore's client-side check of PutEvents' parameters walks every entry again, on every webhook
# (docs/decisions.md, "Warm ingest: no second validation of what ingest builds itself"). Our
# entries are built here, never from input, and EventBridge checks them anyway; a refusal is a
# ClientError that spills like any other.
EVENTS_CONFIG = AWS_CONFIG.merge(Config(parameter_validation=False))

# Every refusal's HTTP status. 503 only when nothing could be made durable: the one a sender may retry.
STATUS: dict[type[WebhookError], int] = {
    WebhookInvalidError: 400,
    NotAuthenticatedError: 401,
    BotNotAllowedError: 403,
    BodyTooLargeError: 413,
    UnsupportedEncodingError: 415,
    AuthUnavailableError: 503,
    NotDurableError: 503,
}
# Field problems listed in a 400 answer at most.
MAX_FIELDS_IN_ANSWER = 20


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


@cache
def service() -> IngestService:
    """Built once per execution environment, on the first request (not at import)."""
    settings = IngestSettings.from_env()
    secrets = boto3.client("secretsmanager", config=AWS_CONFIG)

    def load_secret() -> str:
        value: str = secrets.get_secret_value(SecretId=settings.token_secret_id)["SecretString"]
        return value

    privacy_secret = settings.privacy_key_secret_id
    return IngestService(
        settings,
        verifier=TokenVerifier(load_secret),
        # read on first use, only if a field rule hashes (ingest.fields)
        privacy_key=cache(lambda: load_privacy_key(secrets, privacy_secret)) if privacy_secret else None,
        events=boto3.client("events", config=EVENTS_CONFIG),
        s3=LazyClient("s3", AWS_CONFIG),
    )


def respond(ingest: IngestService, request: HttpRequest, deadline: Deadline | None = None) -> HttpResponse:
    """The HTTP answer to one request: 202 with the delivery id, or the refusal's status and code."""
    try:
        accepted = ingest.handle(request, deadline)
    except WebhookError as exc:
        return error_response(exc)
    return HttpResponse(202, {"deliveryId": accepted.delivery_id, "status": accepted.outcome})


def error_response(error: WebhookError) -> HttpResponse:
    status = next(STATUS[kind] for kind in type(error).__mro__ if kind in STATUS)
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.problems:
        body["fields"] = [
            {"field": p.field, "code": p.code, "message": p.message}
            for p in error.problems[:MAX_FIELDS_IN_ANSWER]
        ]
    return HttpResponse(status, {"error": body})


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
    # invocation (docs/decisions.md, "The warm bench times the Lambda handler").
    logger.set_correlation_id(request.request_id)
    return to_api_gateway(respond(service(), request, Deadline.for_invocation(context)))
