"""events/: the API Gateway events are generated from the webhook bodies and never drift."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from shared.runtime.consumer import WebhookEvent
from tests.conftest import ROOT, TOPICS
from tools.events import SAMPLE_TOKEN, generated_files


def test_generated_events_match_the_files_on_disk() -> None:
    files = generated_files()
    assert len(files) == 2 * len(TOPICS) == 24
    for path, content in files.items():
        assert path.exists(), f"{path.name} missing: run `make events`"
        assert path.read_text() == content, f"{path.name} drifted: run `make events`"


def test_generation_is_deterministic() -> None:
    assert generated_files() == generated_files()


@pytest.mark.parametrize("topic", TOPICS)
def test_apigw_event_is_an_http_api_v2_event_carrying_the_body(topic: str) -> None:
    event = json.loads((ROOT / "events" / "apigw" / f"{topic}.json").read_text())
    model = APIGatewayProxyEventV2Model.model_validate(event)
    assert model.routeKey == "POST /webhook/{token}"
    assert model.requestContext.http.method == "POST"
    assert model.pathParameters == {"token": SAMPLE_TOKEN}
    assert model.isBase64Encoded is False
    assert model.body == (ROOT / "events" / "webhooks" / f"{topic}.json").read_text()


def test_sample_ids_are_distinct_and_realistic() -> None:
    bodies = {t: json.loads((ROOT / "events" / "webhooks" / f"{t}.json").read_text()) for t in TOPICS}
    message_ids = [b["data"]["id"] for t, b in bodies.items() if t.endswith(".message")]
    assert len(set(message_ids)) == len(message_ids) == 5
    request_ids = [b["requestId"] for b in bodies.values()]
    assert len(set(request_ids)) == len(request_ids)
    for body in bodies.values():
        assert "<" not in json.dumps(body), "a seed placeholder survived"
        assert len(body["botId"]) == 30
        assert body["botId"].startswith("eb")
        assert body["botId"].isalnum()
        assert body["botId"].islower()


@pytest.mark.parametrize("topic", TOPICS)
def test_eventbridge_event_parses_with_the_consumers_model(topic: str) -> None:
    event = json.loads((ROOT / "events" / "eventbridge" / f"{topic}.json").read_text())
    parsed = WebhookEvent.model_validate(event)
    assert parsed.detail_type == topic
    assert parsed.account == "123456789012"
    assert parsed.detail.metadata.topic == topic
    assert parsed.detail.webhook == json.loads((ROOT / "events" / "webhooks" / f"{topic}.json").read_text())
