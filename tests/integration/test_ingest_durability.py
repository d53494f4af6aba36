"""When the bus or S3 misbehave, an accepted webhook is still durable somewhere, or the sender is told 503."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from ingest.app import EVENTS_CONFIG, respond
from ingest.auth import TokenVerifier
from ingest.request import HttpRequest
from ingest.service import IngestService
from shared.runtime.observability import metrics
from shared.runtime.settings import IngestSettings
from shared.storage.bus import BusPublisher
from tests.aws import BUS, TOKEN, IngestStack
from tests.conftest import load_sample, metric_names, sample_bytes

RECEIVED_NS = 1700000000123456789
# A closed port on loopback: connecting fails at once, like an unreachable endpoint.
DEAD_ENDPOINT = "http://127.0.0.1:9"
FAST_FAIL = Config(connect_timeout=0.5, read_timeout=0.5, retries={"mode": "standard", "max_attempts": 1})

# Every sample's chat: a spilled event is filed under its chat (shared.storage.bucket.chat_prefix).
SAMPLE_CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"


def entry_for(topic: str) -> dict[str, Any]:
    return {"Source": "ebbot.webhooks", "DetailType": topic, "Detail": ANY, "EventBusName": BUS}


def build(stack: IngestStack, events: Any, s3: Any | None = None, **settings: Any) -> IngestService:
    env = {**stack.env(), **{k.upper(): str(v) for k, v in settings.items()}}
    return IngestService(
        IngestSettings.from_env(env),
        verifier=TokenVerifier(lambda: json.dumps({"token": TOKEN})),
        events=events,
        s3=s3 or stack.s3,
        clock_ns=lambda: RECEIVED_NS,
        new_id=lambda: "delivery-0001",
        publisher=BusPublisher(events, sleep=lambda _: None),
    )


def post(service: IngestService, topic: str = "chat.user.message", raw: bytes | None = None) -> Any:
    body = (raw or sample_bytes(topic)).decode()
    return respond(service, HttpRequest(body, False, {"content-type": "application/json"}, TOKEN))


def test_only_failed_retryable_entries_are_resent() -> None:
    # GIVEN three entries of which the bus throttles one and fails another internally
    events = boto3.client("events")
    entries = [{"Source": "s", "DetailType": f"t{i}", "Detail": "{}", "EventBusName": BUS} for i in range(3)]
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 2,
                "Entries": [
                    {"EventId": "e0"},
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
                ],
            },
            {"Entries": entries},
        )
        # THEN exactly the two failed entries are sent again, in order
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}, {"EventId": "e2"}]},
            {"Entries": entries[1:]},
        )
        publisher = BusPublisher(events, sleep=lambda _: None)
        results = publisher.put(entries)
        stub.assert_no_pending_responses()
    assert [r.event_id for r in results] == ["e0", "e1", "e2"]
    assert publisher.retries == 2


def test_malformed_entries_are_never_retried() -> None:
    events = boto3.client("events")
    entries = [{"Source": "s", "DetailType": "t", "Detail": "{}", "EventBusName": BUS}]
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "MalformedDetail", "ErrorMessage": "bad"}]},
            {"Entries": entries},
        )
        (result,) = BusPublisher(events, sleep=lambda _: None).put(entries)
        stub.assert_no_pending_responses()
    assert (result.published, result.error_code, result.transient) == (False, "MalformedDetail", False)


def test_batches_are_split_at_ten_entries() -> None:
    events = boto3.client("events")
    entries = [{"Source": "s", "DetailType": f"t{i}", "Detail": "{}", "EventBusName": BUS} for i in range(12)]
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{i}"} for i in range(10)]},
            {"Entries": entries[:10]},
        )
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "e10"}, {"EventId": "e11"}]},
            {"Entries": entries[10:]},
        )
        results = BusPublisher(events).put(entries)
        stub.assert_no_pending_responses()
    assert [r.event_id for r in results] == [f"e{i}" for i in range(12)]


def test_throttled_entry_is_retried_then_accepted(stack: IngestStack) -> None:
    events = boto3.client("events")
    with Stubber(events) as stub:
        throttled = {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "x"}],
        }
        stub.add_response("put_events", throttled, {"Entries": [entry_for("chat.user.message")]})
        stub.add_response("put_events", throttled, {"Entries": [entry_for("chat.user.message")]})
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "ok"}]},
            {"Entries": [entry_for("chat.user.message")]},
        )
        response = post(build(stack, events))
        stub.assert_no_pending_responses()
    assert (response.status, response.body["status"]) == (202, "accepted")
    assert stack.objects() == {}


def test_an_entry_that_stays_throttled_is_spilled_and_accepted(stack: IngestStack) -> None:
    events = boto3.client("events")
    with Stubber(events) as stub:
        for _ in range(4):  # the publisher's attempts
            stub.add_response(
                "put_events",
                {
                    "FailedEntryCount": 1,
                    "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "x"}],
                },
                {"Entries": [entry_for("chat.user.message")]},
            )
        response = post(build(stack, events))
        stub.assert_no_pending_responses()
    assert (response.status, response.body["status"]) == (202, "spilled")
    (key,) = stack.objects("spill/")
    assert key == f"spill/chat={SAMPLE_CHAT}/dt=2023-11-14/delivery-0001.json"
    spilled = json.loads(stack.objects("spill/")[key])
    assert spilled["entry"]["DetailType"] == "chat.user.message"
    assert json.loads(spilled["entry"]["Detail"])["webhook"] == load_sample("chat.user.message")


@pytest.mark.parametrize(
    "code", ["MalformedDetail", "AccessDeniedException", "NotAuthorizedForSourceException", "InvalidArgument"]
)
def test_an_entry_the_bus_refuses_for_good_is_spilled_counted_and_never_retried(
    stack: IngestStack, code: str, capsys: pytest.CaptureFixture[str], fresh_metrics: None
) -> None:
    # A valid webhook the bus will not take (a bus policy or permission mistake, most often) is
    # kept where redrive finds it, not in quarantine, which is for bodies that failed validation.
    events = boto3.client("events")
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "x"}]},
            {"Entries": [entry_for("chat.user.message")]},
        )
        response = post(build(stack, events))
        stub.assert_no_pending_responses()
    assert (response.status, response.body["status"]) == (202, "spilled")
    assert stack.objects("quarantine/") == {}
    (spilled,) = stack.objects("spill/").values()
    assert json.loads(spilled)["refusedBy"] == code
    assert json.loads(json.loads(spilled)["entry"]["Detail"])["webhook"] == load_sample("chat.user.message")
    metrics.flush_metrics()
    assert {"BusRefused", "WebhooksSpilled"} <= metric_names(capsys.readouterr().out)


def test_a_refused_entry_whose_spill_fails_is_503_and_counted_lost(
    stack: IngestStack, capsys: pytest.CaptureFixture[str], fresh_metrics: None
) -> None:
    events = boto3.client("events")
    s3 = boto3.client("s3", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "AccessDeniedException", "ErrorMessage": "x"}]},
            {"Entries": [entry_for("chat.user.message")]},
        )
        response = post(build(stack, events, s3))
    assert (response.status, response.body["error"]["code"]) == (503, "storage_unavailable")
    metrics.flush_metrics()
    assert {"BusRefused", "WebhooksLost"} <= metric_names(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalException", 500),
        # The handler's client leaves parameter checks to EventBridge (ingest.app.EVENTS_CONFIG):
        # a request EventBridge refuses as a whole is kept the same way.
        ("ValidationException", 400),
    ],
)
def test_whole_call_failure_is_spilled(stack: IngestStack, code: str, status: int) -> None:
    events = boto3.client("events", config=EVENTS_CONFIG)
    with Stubber(events) as stub:
        stub.add_client_error("put_events", code, http_status_code=status)
        response = post(build(stack, events))
    assert (response.status, response.body["status"]) == (202, "spilled")
    assert list(stack.objects("spill/")) == [f"spill/chat={SAMPLE_CHAT}/dt=2023-11-14/delivery-0001.json"]


def test_bus_unreachable_is_spilled_and_accepted(stack: IngestStack) -> None:
    events = boto3.client("events", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    response = post(build(stack, events))
    assert (response.status, response.body) == (202, {"deliveryId": "delivery-0001", "status": "spilled"})
    assert list(stack.objects("spill/")) == [f"spill/chat={SAMPLE_CHAT}/dt=2023-11-14/delivery-0001.json"]


def test_bus_and_s3_unreachable_is_503(stack: IngestStack) -> None:
    events = boto3.client("events", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    s3 = boto3.client("s3", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    response = post(build(stack, events, s3))
    assert (response.status, response.body["error"]["code"]) == (503, "storage_unavailable")


def _big_close(items: int) -> bytes:
    body = load_sample("chat.close")
    template = body["data"]["conversation"][3]
    body["data"]["conversation"] = [
        {**template, "id": f"m-{i:06d}", "value": "x" * 200} for i in range(items)
    ]
    return json.dumps(body).encode()


def test_s3_down_during_claim_check_sends_inline_when_it_fits(stack: IngestStack) -> None:
    # 300 KB: above the 256 KB threshold, below EventBridge's 1 MB limit.
    raw = _big_close(1200)
    assert 262_144 < len(raw) < 900_000
    events = boto3.client("events")
    s3 = boto3.client("s3", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    with Stubber(events) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "ok"}]},
            {"Entries": [entry_for("chat.close")]},
        )
        response = post(build(stack, events, s3), raw=raw)
        stub.assert_no_pending_responses()
    assert (response.status, response.body["status"]) == (202, "accepted")


def test_s3_down_during_claim_check_of_a_body_over_1mb_is_503(stack: IngestStack) -> None:
    raw = _big_close(6000)
    assert len(raw) > 1_100_000
    events = boto3.client("events")
    s3 = boto3.client("s3", endpoint_url=DEAD_ENDPOINT, config=FAST_FAIL)
    with Stubber(events) as stub:  # no response queued: the bus must not be called
        response = post(build(stack, events, s3), raw=raw)
        stub.assert_no_pending_responses()
    assert (response.status, response.body["error"]["code"]) == (503, "storage_unavailable")


@pytest.mark.parametrize("failure", ["ResourceNotFoundException", "InternalServiceError"])
def test_secret_unreadable_at_cold_start_is_503_and_nothing_written(stack: IngestStack, failure: str) -> None:
    def broken() -> str:
        raise RuntimeError(failure)

    service = IngestService(
        IngestSettings.from_env(stack.env()),
        verifier=TokenVerifier(broken),
        events=stack.events,
        s3=stack.s3,
    )
    response = post(service)
    assert (response.status, response.body["error"]["code"]) == (503, "auth_unavailable")
    assert stack.snapshot() == {"objects": {}, "events": []}
