"""Ingest answers within 10 seconds with any one dependency hung, whatever the function's Timeout.

A hung service is a socket on loopback that accepts connections and never answers (conftest's
hung_endpoint), reached through botocore's per-service endpoint variables. The handler runs as
Lambda runs it, with a context whose remaining time is the function's Timeout. The bound asserted
is the contract with the sender (an answer within 10 s, ingest.deadline), not a speed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ingest import app
from ingest.auth import TokenVerifier
from ingest.deadline import AWS_CONFIG, Deadline
from ingest.request import HttpRequest
from ingest.service import IngestService
from shared.runtime.settings import IngestSettings
from tests.aws import SECRET, TOKEN, IngestStack, create_ingest_stack
from tests.conftest import HungEndpoint, metric_names, sample_bytes
from tests.lambda_context import FakeLambdaContext

ANSWER_WITHIN_S = 10.0
ENDPOINT_VARIABLE = {
    "events": "AWS_ENDPOINT_URL_EVENTBRIDGE",
    "secretsmanager": "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "s3": "AWS_ENDPOINT_URL_S3",
}


class Context(FakeLambdaContext):
    """Lambda's context for a function with this Timeout, invoked now."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._ends = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, fresh_metrics: None) -> Iterator[IngestStack]:
    with mock_aws():
        stack = create_ingest_stack()
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        app.service.cache_clear()
        yield stack
        app.service.cache_clear()


def event(body: bytes) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /webhook/{token}",
        "headers": {"content-type": "application/json"},
        "pathParameters": {"token": TOKEN},
        "requestContext": {"requestId": "r-1"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def invoke(body: bytes, timeout_s: float = 15) -> tuple[dict[str, Any], float]:
    """The handler's answer and how long it took, as API Gateway would wait for it."""
    started = time.monotonic()
    answer = app.lambda_handler(event(body), Context(timeout_s))
    return answer, time.monotonic() - started


def hang(monkeypatch: pytest.MonkeyPatch, endpoint: HungEndpoint, service: str) -> None:
    monkeypatch.setenv(ENDPOINT_VARIABLE[service], endpoint.url)


@pytest.fixture
def hung(hung_endpoint: HungEndpoint, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Points one AWS service of the function (events, s3, secretsmanager) at a socket that accepts
    and never answers."""
    return lambda service: hang(monkeypatch, hung_endpoint, service)


def refused_in_time(answer: dict[str, Any], took: float) -> str:
    """The error code of a 503 answered within the deadline."""
    assert answer["statusCode"] == 503
    assert took < ANSWER_WITHIN_S
    return str(json.loads(answer["body"])["error"]["code"])


def big_close(messages: int) -> bytes:
    body = json.loads(sample_bytes("chat.close"))
    template = body["data"]["conversation"][3]
    body["data"]["conversation"] = [
        {**template, "id": f"m-{i:06d}", "value": "x" * 200} for i in range(messages)
    ]
    return json.dumps(body).encode()


@pytest.mark.parametrize("timeout_s", [15, 900])
def test_a_hung_bus_is_spilled_and_answered_202_in_time(
    stack: IngestStack,
    hung_endpoint: HungEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    timeout_s: int,
) -> None:
    hang(monkeypatch, hung_endpoint, "events")
    answer, took = invoke(sample_bytes("chat.user.message"), timeout_s)
    assert (answer["statusCode"], json.loads(answer["body"])["status"]) == (202, "spilled")
    assert took < ANSWER_WITHIN_S
    assert hung_endpoint.connections  # the bus was asked, and did not answer
    (spilled,) = stack.objects("spill/").values()
    assert json.loads(json.loads(spilled)["entry"]["Detail"])["webhook"]["topic"] == "chat.user.message"
    names = metric_names(capsys.readouterr().out)
    assert "WebhooksSpilled" in names


def test_a_shorter_timeout_shortens_the_budget(
    stack: IngestStack, hung_endpoint: HungEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang(monkeypatch, hung_endpoint, "events")
    answer, took = invoke(sample_bytes("chat.user.message"), timeout_s=6)
    assert json.loads(answer["body"])["status"] == "spilled"
    assert took < 6 - 1  # Lambda's margin kept


def test_a_hung_secret_store_at_a_cold_start_is_503_and_nothing_is_kept(
    stack: IngestStack, hung: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    hung("secretsmanager")
    assert refused_in_time(*invoke(sample_bytes("chat.create"))) == "auth_unavailable"
    assert stack.snapshot() == {"objects": {}, "events": []}
    names = metric_names(capsys.readouterr().out)
    assert {"AuthUnavailable", "WebhooksLost"} <= names


def test_a_hung_secret_store_never_holds_a_warm_function_whose_tokens_are_due(
    stack: IngestStack, hung_endpoint: HungEndpoint
) -> None:
    # GIVEN a warm function that read its tokens 301 s ago, and a Secrets Manager that now hangs
    clients = {"secrets": stack.secrets}
    now = [1000.0]
    verifier = TokenVerifier(
        lambda: clients["secrets"].get_secret_value(SecretId=SECRET)["SecretString"], clock=lambda: now[0]
    )
    service = IngestService(
        IngestSettings.from_env(stack.env()), verifier=verifier, events=stack.events, s3=stack.s3
    )
    request = HttpRequest(sample_bytes("chat.create").decode(), False, {}, TOKEN)
    assert app.respond(service, request).status == 202
    clients["secrets"] = boto3.client("secretsmanager", endpoint_url=hung_endpoint.url, config=AWS_CONFIG)
    now[0] += 301
    # WHEN a webhook arrives, THEN the cached token still answers it, without waiting for the refresh
    started = time.monotonic()
    response = app.respond(service, request, Deadline(8))
    assert (response.status, response.body["status"]) == (202, "accepted")
    assert time.monotonic() - started < 1.0  # the refresh's own wait, not a Secrets Manager timeout


def test_a_hung_s3_during_a_claim_check_sends_the_body_inline_when_it_fits(
    stack: IngestStack, hung_endpoint: HungEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang(monkeypatch, hung_endpoint, "s3")
    raw = big_close(1200)
    assert 262_144 < len(raw) < 900_000
    answer, took = invoke(raw)
    assert (answer["statusCode"], json.loads(answer["body"])["status"]) == (202, "accepted")
    assert took < ANSWER_WITHIN_S
    assert len(stack.captured()) == 1


def test_a_hung_s3_during_a_claim_check_of_a_body_over_1mb_is_503_and_counted(
    stack: IngestStack, hung: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    hung("s3")
    raw = big_close(6000)
    assert len(raw) > 1_100_000
    assert refused_in_time(*invoke(raw)) == "storage_unavailable"
    assert stack.captured() == []
    names = metric_names(capsys.readouterr().out)
    assert {"ClaimCheckFailed", "WebhooksLost"} <= names
