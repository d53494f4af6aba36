"""The ingest function against moto: every sample reaches the bus as the documented event."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
from typing import Any

import boto3
import pytest

from ingest import app
from ingest.app import respond
from ingest.auth import TokenVerifier
from ingest.request import HttpRequest
from ingest.service import IngestService
from shared.contract.envelope import BusDetail
from shared.runtime.settings import IngestSettings
from shared.storage.claim_check import resolve_webhook
from tests.aws import BUCKET, BUS, SECRET, SOURCE, TOKEN, IngestStack
from tests.conftest import ROOT, TOPICS, load_sample, metric_lines_in, sample_bytes
from tests.lambda_context import FakeLambdaContext

RECEIVED_NS = 1700000000123456789
RECEIVED_AT = "2023-11-14T22:13:20.123456Z"
CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"
BOT = "ebq7k3m9x2p4n8r1t5v6w0y3z7c2d4"

# topic -> (messageId, occurredAt, sentAt, routing fields that are set), written by hand.
EXPECTED: dict[str, tuple[str | None, str, str, dict[str, Any]]] = {
    "chat.create": (
        None,
        "2023-01-01T00:00:00.000000Z",
        "2023-01-01T00:00:00.000000Z",
        {"chatStatus": "ongoing"},
    ),
    "chat.data.update": (None, "2023-01-01T00:00:01.000000Z", "2023-01-01T00:00:01.000000Z", {}),
    "chat.user.update": (None, "2023-01-01T00:00:02.000000Z", "2023-01-01T00:00:02.000000Z", {}),
    "chat.scenario.run": (
        None,
        "2023-01-01T00:00:03.000000Z",
        "2023-01-01T00:00:03.000000Z",
        {"scenarioId": "4a1f2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d_9f8e7d6c-5b4a-4c3d-9e2f-1a0b9c8d7e6f"},
    ),
    "chat.bot.message": (
        "f7011d1a-e192-4351-9251-c0c6d3b32524",
        "2023-01-01T00:00:03.241731Z",
        "2023-01-01T00:00:03.000000Z",
        {"sender": "bot", "messageType": "url"},
    ),
    "chat.user.message": (
        "9d0c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
        "2023-01-01T00:00:05.397183Z",
        "2023-01-01T00:00:05.000000Z",
        {"sender": "user", "messageType": "text"},
    ),
    "chat.status.change": (
        None,
        "2023-01-01T00:00:06.000000Z",
        "2023-01-01T00:00:06.000000Z",
        {"chatStatus": "queued"},
    ),
    "chat.update": (
        None,
        "2023-01-01T00:00:07.000000Z",
        "2023-01-01T00:00:07.000000Z",
        {"chatStatus": "ongoing", "handledBy": "agent"},
    ),
    "chat.system.message": (
        "2276d442-3af1-4f80-a21b-c405632e3b60",
        "2023-01-01T00:00:08.158836Z",
        "2023-01-01T00:00:08.000000Z",
        {"sender": "system", "messageType": "text_info"},
    ),
    "chat.agent.message": (
        "e8328e60-6757-48ea-87d1-3be485348b4c",
        "2023-01-01T00:00:10.310412Z",
        "2023-01-01T00:00:10.000000Z",
        {"sender": "agent", "messageType": "text"},
    ),
    "chat.message": (
        "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
        "2023-01-01T00:00:15.004417Z",
        "2023-01-01T00:00:15.000000Z",
        {"sender": "user", "messageType": "text"},
    ),
    "chat.close": (
        None,
        "2023-01-01T00:00:21.000000Z",
        "2023-01-01T00:00:21.000000Z",
        {"chatStatus": "chat_closed", "rating": 4},
    ),
}
ROUTING_KEYS = ("sender", "messageType", "chatStatus", "handledBy", "scenarioId", "rating")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_service(stack: IngestStack, clock: FakeClock | None = None, **settings: Any) -> IngestService:
    env = {**stack.env(), **{k.upper(): str(v) for k, v in settings.items()}}
    counter = iter(range(1, 10_000))
    return IngestService(
        IngestSettings.from_env(env),
        verifier=TokenVerifier(
            lambda: stack.secrets.get_secret_value(SecretId=SECRET)["SecretString"],
            clock=clock or FakeClock(),
        ),
        events=stack.events,
        s3=stack.s3,
        clock_ns=lambda: RECEIVED_NS,
        new_id=lambda: f"delivery-{next(counter):04d}",
    )


def post(service: IngestService, body: str | bytes, *, token: str | None = TOKEN, **headers: str) -> Any:
    text = body.decode() if isinstance(body, bytes) else body
    return respond(
        service,
        HttpRequest(
            body=text,
            is_base64=False,
            headers={"content-type": "application/json", **headers},
            path_token=token,
        ),
    )


@pytest.mark.parametrize("topic", TOPICS)
def test_each_sample_is_accepted_and_reaches_the_bus_as_documented(stack: IngestStack, topic: str) -> None:
    # GIVEN the ingest service in front of moto's bus
    service = make_service(stack)
    raw = sample_bytes(topic)
    # WHEN the sample is posted with the token in the path
    response = post(service, raw)
    # THEN it is accepted with its delivery id, and one event reaches a rule target
    assert (response.status, response.body) == (202, {"deliveryId": "delivery-0001", "status": "accepted"})
    (event,) = stack.captured()
    assert event["source"] == SOURCE
    assert event["detail-type"] == topic
    message_id, occurred_at, sent_at, routing = EXPECTED[topic]
    metadata = event["detail"]["metadata"]
    assert metadata == {
        "schemaVersion": "1",
        "deliveryId": "delivery-0001",
        "topic": topic,
        "botId": BOT,
        "chatId": CHAT,
        "messageId": message_id,
        "requestId": load_sample(topic)["requestId"],
        "receivedAt": RECEIVED_AT,
        "sentAt": sent_at,
        "occurredAt": occurred_at,
        "occurredAtNs": metadata["occurredAtNs"],
        "bodySize": len(raw),
        "bodySha256": hashlib.sha256(raw).hexdigest(),
        **{key: routing.get(key) for key in ROUTING_KEYS},
    }
    assert metadata["occurredAtNs"].startswith(occurred_at[:4] and "16725312")
    assert event["detail"]["webhook"] == json.loads(raw)
    assert stack.objects() == {}  # nothing in S3 on the happy path


def test_handler_wires_the_service_from_the_environment(
    stack: IngestStack, monkeypatch: pytest.MonkeyPatch, clients_made: list[str]
) -> None:
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    app.service.cache_clear()
    event = json.loads((ROOT / "events" / "apigw" / "chat.create.json").read_text())
    event["pathParameters"]["token"] = TOKEN
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhook/{TOKEN}"
    big = load_sample("chat.close")
    big["data"]["conversation"] *= 150  # about 330 KB, over the claim-check threshold: S3 is needed now
    try:
        response = app.lambda_handler(event, FakeLambdaContext())
        # The common cold start makes no S3 client: only claim checks, spills and quarantine use it.
        assert sorted(clients_made) == ["events", "secretsmanager"]
        claim_checked = app.lambda_handler(
            {**event, "body": json.dumps(big), "isBase64Encoded": False}, FakeLambdaContext()
        )
    finally:
        app.service.cache_clear()
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["status"] == "accepted"
    assert claim_checked["statusCode"] == 202
    assert sorted(clients_made) == ["events", "s3", "secretsmanager"]
    created, closed = stack.captured()
    assert created["detail-type"] == "chat.create"
    assert closed["detail"]["webhookRef"]["key"] in stack.objects("claim-check/")


def test_bearer_header_is_accepted_with_any_scheme_case(stack: IngestStack) -> None:
    service = make_service(stack)
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = post(service, sample_bytes("chat.create"), token=None, authorization=f"{scheme} {TOKEN}")
        assert response.status == 202
    assert len(stack.captured()) == 3


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),
        ("wrong-token-0123456789abcdef", {}),
        (TOKEN[:-1], {}),
        (None, {"authorization": f"Basic {TOKEN}"}),
        (None, {"authorization": "Bearer"}),
        ("", {"authorization": f"Token {TOKEN}"}),
    ],
)
def test_wrong_or_missing_token_is_401_and_nothing_is_written(
    stack: IngestStack, token: str | None, headers: dict[str, str]
) -> None:
    service = make_service(stack)
    response = post(service, sample_bytes("chat.create"), token=token, **headers)
    assert response.status == 401
    assert response.body == {"error": {"code": "unauthorized", "message": "Unauthorized"}}
    assert stack.snapshot() == {"objects": {}, "events": []}


def test_unauthenticated_garbage_is_401_before_any_parse(stack: IngestStack) -> None:
    service = make_service(stack, max_body_bytes=10)
    response = post(service, "not json at all and far too long", token="nope")
    assert response.status == 401
    assert stack.snapshot() == {"objects": {}, "events": []}


def _nested(depth: int) -> str:
    return '{"topic":"chat.create","botId":"b","data":{"id":"c","x":' + "[" * depth + "]" * depth + "}}"


BAD_INPUTS: list[tuple[str, str | bytes, dict[str, Any], int, str, str | None]] = [
    # (case, body, request options, status, code, field)
    ("not json", "{not json", {}, 400, "invalid_json", None),
    ("empty", "", {}, 400, "empty_body", None),
    ("array", "[1, 2]", {}, 400, "not_an_object", None),
    ("string", '"chat.create"', {}, 400, "not_an_object", None),
    ("null", "null", {}, 400, "not_an_object", None),  # found by the fuzz test: was a 500
    ("number", "42", {}, 400, "not_an_object", None),
    ("no topic", '{"botId": "b", "data": {"id": "c"}}', {}, 400, "missing_field", "topic"),
    ("topic number", '{"topic": 5, "botId": "b"}', {}, 400, "wrong_type", "topic"),
    ("no bot", '{"topic": "chat.create", "data": {"id": "c"}}', {}, 400, "missing_field", "botId"),
    ("no chat id", '{"topic": "chat.create", "botId": "b", "data": {}}', {}, 400, "missing_field", "data.id"),
    (
        "chat id type",
        '{"topic": "chat.update", "botId": "b", "chat": {"id": 7}}',
        {},
        400,
        "wrong_type",
        "chat.id",
    ),
    ("too deep", _nested(200), {}, 400, "too_deep", None),
    ("deeper than recursion", _nested(100_000), {}, 400, "too_deep", None),
    ("NaN", '{"topic": "x.y", "botId": "b", "n": NaN}', {}, 400, "number_out_of_range", "n"),
    (
        "Infinity",
        '{"topic": "x.y", "botId": "b", "d": {"n": -Infinity}}',
        {},
        400,
        "number_out_of_range",
        "d.n",
    ),
    (
        "int beyond int64",
        '{"topic": "x.y", "botId": "b", "n": [9223372036854775808]}',
        {},
        400,
        "number_out_of_range",
        "n[0]",
    ),
    (
        "5000 digits",
        '{"topic": "x.y", "botId": "b", "n": ' + "9" * 5000 + "}",
        {},
        400,
        "number_out_of_range",
        "n",
    ),
    ("float overflow", '{"topic": "x.y", "botId": "b", "n": 1e999}', {}, 400, "number_out_of_range", "n"),
    ("beyond dynamodb", '{"topic": "x.y", "botId": "b", "n": 1e127}', {}, 400, "number_out_of_range", "n"),
    ("lone surrogate", '{"topic": "x.y", "botId": "b", "s": "\\ud800"}', {}, 400, "invalid_unicode", None),
    ("invalid utf-8", b'{"topic": "x.y", "botId": "b\xff"}', {"is_base64": True}, 400, "invalid_utf8", None),
    ("bad base64", "!!!not base64!!!", {"base64_raw": True}, 400, "invalid_base64", None),
    ("bad gzip", "not gzip", {"headers": {"content-encoding": "gzip"}}, 400, "invalid_gzip", None),
    ("brotli", "{}", {"headers": {"content-encoding": "br"}}, 415, "unsupported_content_encoding", None),
]


def _request(body: str | bytes, options: dict[str, Any], token: str = TOKEN) -> HttpRequest:
    headers = {"content-type": "application/json", **options.get("headers", {})}
    if options.get("is_base64"):
        raw = body if isinstance(body, bytes) else body.encode()
        return HttpRequest(base64.b64encode(raw).decode(), True, headers, token)
    if options.get("base64_raw"):
        return HttpRequest(str(body), True, headers, token)
    return HttpRequest(body if isinstance(body, str) else body.decode(), False, headers, token)


@pytest.mark.parametrize(
    ("case", "body", "options", "status", "code", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_gets_its_documented_status_and_code_and_goes_to_quarantine_only(
    stack: IngestStack,
    case: str,
    body: str | bytes,
    options: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    service = make_service(stack)
    response = respond(service, _request(body, options))
    assert response.status == status, response.body
    assert response.body["error"]["code"] == code
    if field is not None:
        assert response.body["error"]["fields"][0]["field"] == field
        assert response.body["error"]["message"].startswith(field)
    # Nothing reaches the bus; the bytes are kept in quarantine (except an empty body: nothing to keep).
    assert stack.captured() == []
    objects = stack.objects()
    if case == "empty":
        assert objects == {}
    else:
        (key,) = objects
        # filed under the chat the body names where its topic keeps it, else under nochat/
        assert re.fullmatch(r"quarantine/(nochat|chat=[^/]+)/dt=2023-11-14/delivery-0001\.bin", key), key
        head = stack.s3.head_object(Bucket=BUCKET, Key=key)
        assert head["Metadata"]["reason"] == code
        assert TOKEN.encode() not in objects[key]
        assert TOKEN not in json.dumps(head["Metadata"])


def test_over_the_size_limit_is_413_and_nothing_is_written(stack: IngestStack) -> None:
    service = make_service(stack, max_body_bytes=2048)
    body = json.dumps({**load_sample("chat.create"), "padding": "x" * 4096})
    assert post(service, body).status == 413
    gz = base64.b64encode(gzip.compress(body.encode())).decode()  # small on the wire, large inflated
    response = respond(service, HttpRequest(gz, True, {"content-encoding": "gzip"}, TOKEN))
    assert (response.status, response.body["error"]["code"]) == (413, "body_too_large")
    assert stack.snapshot() == {"objects": {}, "events": []}


def test_base64_gzip_bom_and_odd_content_types_are_accepted(stack: IngestStack) -> None:
    service = make_service(stack)
    raw = sample_bytes("chat.user.message")
    variants = [
        HttpRequest(
            base64.b64encode(raw).decode(), True, {"content-type": "application/octet-stream"}, TOKEN
        ),
        HttpRequest(base64.b64encode(gzip.compress(raw)).decode(), True, {"content-encoding": "gzip"}, TOKEN),
        HttpRequest(
            base64.b64encode(b"\xef\xbb\xbf" + raw).decode(), True, {"content-type": "text/plain"}, TOKEN
        ),
        HttpRequest(raw.decode(), False, {"content-type": "application/x-www-form-urlencoded"}, TOKEN),
        HttpRequest(raw.decode(), False, {}, TOKEN),
    ]
    for request in variants:
        assert respond(service, request).status == 202
    events = stack.captured()
    assert len(events) == len(variants)
    assert all(e["detail"]["webhook"] == json.loads(raw) for e in events)


def test_unknown_topic_is_routed_under_its_own_name(stack: IngestStack) -> None:
    service = make_service(stack)
    body = {"topic": "chat.rating.given", "botId": BOT, "data": {"chatId": CHAT, "stars": 2}}
    assert post(service, json.dumps(body)).status == 202
    (event,) = stack.captured()
    assert event["detail-type"] == "chat.rating.given"
    assert event["detail"]["metadata"]["chatId"] == CHAT
    assert event["detail"]["webhook"] == body


def test_bot_allowlist(stack: IngestStack) -> None:
    service = make_service(stack, allowed_bot_ids=f"{BOT}, ebother000000000000000000000000")
    assert post(service, sample_bytes("chat.create")).status == 202
    other = {**load_sample("chat.create"), "botId": "ebsomeoneelse0000000000000000000"}
    response = post(service, json.dumps(other))
    assert (response.status, response.body["error"]["code"]) == (403, "bot_not_allowed")
    assert len(stack.captured()) == 1
    assert list(stack.objects("quarantine/")) == [f"quarantine/chat={CHAT}/dt=2023-11-14/delivery-0002.bin"]


def test_a_large_transcript_is_claim_checked_and_resolves_byte_identical(stack: IngestStack) -> None:
    # GIVEN a chat.close of about 1.5 MB
    body = load_sample("chat.close")
    template = body["data"]["conversation"][3]
    body["data"]["conversation"] = [
        {**template, "id": f"m-{i:06d}", "value": "lorem ipsum dolor sit amet " * 8} for i in range(4300)
    ]
    raw = json.dumps(body, indent=1).encode()
    assert 1_400_000 < len(raw) < 1_700_000
    # WHEN it is posted
    response = post(make_service(stack), raw)
    # THEN the event carries a reference, and the referenced object is the exact bytes
    assert response.status == 202
    (event,) = stack.captured()
    detail = BusDetail.model_validate(event["detail"])
    assert detail.webhook is None
    assert detail.webhookRef is not None
    assert detail.webhookRef.key == f"claim-check/chat={CHAT}/dt=2023-11-14/delivery-0001.json"
    assert stack.objects("claim-check/")[detail.webhookRef.key] == raw
    assert resolve_webhook(detail, stack.s3) == body
    assert len(json.dumps(event["detail"])) < 4096  # the bus carries metadata only
    assert detail.metadata.chatStatus == "chat_closed"  # routing fields survive the claim check


def test_rotation_two_tokens_valid_and_a_rotated_in_token_works_at_once(stack: IngestStack) -> None:
    clock = FakeClock()
    service = make_service(stack, clock)
    assert post(service, sample_bytes("chat.create")).status == 202
    new_token = "brand-new-token-0123456789abcdef"
    # The operator adds a second token, well inside the 5-minute cache: the first request with it
    # refreshes the secret (refreshes are limited to one per 5 s) and is accepted.
    stack.secrets.put_secret_value(
        SecretId=SECRET, SecretString=json.dumps({"token": TOKEN, "next": new_token})
    )
    clock.now += 6
    assert post(service, sample_bytes("chat.create"), token=new_token).status == 202
    assert post(service, sample_bytes("chat.create"), token=TOKEN).status == 202
    # Then removes the old one: the old token is refused once the cache expires.
    stack.secrets.put_secret_value(SecretId=SECRET, SecretString=json.dumps({"token": new_token}))
    clock.now += 301
    assert post(service, sample_bytes("chat.create"), token=TOKEN).status == 401
    assert post(service, sample_bytes("chat.create"), token=new_token).status == 202
    assert len(stack.captured()) == 4


def test_bus_and_bucket_names_come_from_the_environment(stack: IngestStack) -> None:
    settings = make_service(stack)._settings
    assert (settings.event_bus_name, settings.bucket_name) == (BUS, BUCKET)
    assert boto3.client("events").describe_event_bus(Name=BUS)["Name"] == BUS


@pytest.mark.usefixtures("fresh_metrics")
def test_token_path_and_chat_content_never_reach_logs_s3_or_the_bus(
    stack: IngestStack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_output: io.StringIO,
) -> None:
    # GIVEN the real handler, logging at INFO as deployed
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    app.service.cache_clear()
    base = json.loads((ROOT / "events" / "apigw" / "chat.user.message.json").read_text())

    def call(token: str, body: str) -> int:
        event = json.loads(json.dumps(base))
        event["pathParameters"]["token"] = token
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhook/{token}"
        event["body"] = body
        return int(app.lambda_handler(event, FakeLambdaContext())["statusCode"])

    try:
        # WHEN it serves an accepted, an invalid and an unauthenticated request
        assert call(TOKEN, base["body"]) == 202
        assert call(TOKEN, base["body"].replace('"chatId"', '"chat_id"')) == 400
        assert call("guess-0123456789abcdefghij", base["body"]) == 401
    finally:
        app.service.cache_clear()
    # THEN no log line, object (body or metadata) or bus event holds the token or the path
    out = capsys.readouterr()
    logs = log_output.getvalue() + out.out + out.err  # log lines, then metrics (EMF) and anything else
    objects = stack.objects()
    heads = [stack.s3.head_object(Bucket=BUCKET, Key=k)["Metadata"] for k in objects]
    everything_stored = json.dumps([o.decode("utf-8", "replace") for o in objects.values()]) + json.dumps(
        heads
    )
    bus = json.dumps(stack.captured())
    for secret in (TOKEN, f"/webhook/{TOKEN}", "guess-0123456789abcdefghij"):
        assert secret not in logs
        assert secret not in everything_stored
        assert secret not in bus
    # and no chat content is logged at INFO
    assert "I would like to talk to a person" not in logs
    # and every log line of a request carries API Gateway's request id as its correlation id
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["webhook accepted", "webhook rejected"]
    # and metrics count only what API Gateway's and Lambda's own do not: not the accepted webhook
    counted = [name for line in metric_lines_in(out.out) for name in line if name[0].isupper()]
    assert counted == ["WebhooksRejected", "WebhooksQuarantined", "WebhooksUnauthorized"]
    assert {line.get("correlation_id") for line in lines} == {base["requestContext"]["requestId"]}
    assert len(objects) == 1  # the invalid body, quarantined


@pytest.mark.parametrize(
    ("token", "headers"),
    [("\udc80" * 24, {}), (None, {"authorization": "Bearer " + "\udcff" * 24})],
    ids=["path", "bearer"],
)
def test_a_lone_surrogate_in_the_token_is_401_not_500(
    stack: IngestStack, token: str | None, headers: dict[str, str]
) -> None:
    response = post(make_service(stack), sample_bytes("chat.create"), token=token, **headers)
    assert response.status == 401
    assert stack.snapshot() == {"objects": {}, "events": []}


def test_a_non_ascii_header_value_does_not_break_the_quarantine(stack: IngestStack) -> None:
    response = post(
        make_service(stack), b"{not json", **{"content-type": "application/json; charset=\u00e5\u65e5"}
    )
    assert (response.status, response.body["error"]["code"]) == (400, "invalid_json")
    (key,) = stack.objects("quarantine/")
    metadata = stack.s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    assert metadata["content-type"] == "application/json; charset=\\xe5\\u65e5"


def test_every_member_of_a_gzip_body_is_read() -> None:
    from ingest.request import decode_body

    raw = sample_bytes("chat.create")
    two_members = gzip.compress(raw[:100]) + gzip.compress(raw[100:])
    encoded = base64.b64encode(two_members).decode()
    assert decode_body(encoded, is_base64=True, content_encoding="gzip", max_bytes=10_000) == raw


@pytest.mark.parametrize("trailing", [b"\x00", b"garbage after the end", b"\x1f\x8bnot a member"])
def test_bytes_after_the_gzip_body_are_refused_not_ignored(stack: IngestStack, trailing: bytes) -> None:
    body = base64.b64encode(gzip.compress(sample_bytes("chat.create")) + trailing).decode()
    response = respond(make_service(stack), HttpRequest(body, True, {"content-encoding": "gzip"}, TOKEN))
    assert (response.status, response.body["error"]["code"]) == (400, "invalid_gzip")
    assert stack.captured() == []


@pytest.mark.parametrize(
    "secret", [{"token": "too-short"}, {"note": TOKEN}, {"token": TOKEN, "next": "short"}]
)
def test_a_secret_with_a_short_or_no_token_makes_every_request_503_and_alarms(
    stack: IngestStack, secret: dict[str, str], capsys: pytest.CaptureFixture[str], fresh_metrics: None
) -> None:
    from shared.runtime.observability import metrics
    from tests.conftest import metric_names

    stack.secrets.put_secret_value(SecretId=SECRET, SecretString=json.dumps(secret))
    response = post(make_service(stack), sample_bytes("chat.create"))
    assert (response.status, response.body["error"]["code"]) == (503, "auth_unavailable")
    assert stack.snapshot() == {"objects": {}, "events": []}
    metrics.flush_metrics()
    assert "AuthUnavailable" in metric_names(capsys.readouterr().out)  # AuthUnavailableAlarm


# --- keep less: the operator's field policy (ingest.fields, docs/privacy.md) ----------------------

PRIVACY_KEY_SECRET = "ebbot-webhooks-test-privacy"
CLIENT_IP = "203.0.113.42"  # chat.data.update's data.clientIp in the sample


def _with_privacy_key(stack: IngestStack, policy: str) -> IngestService:
    from shared.storage.privacy import parse_secret

    stack.secrets.create_secret(Name=PRIVACY_KEY_SECRET, SecretString=json.dumps({"key": "k" * 48}))
    service = make_service(stack, payload_field_policy=policy, privacy_key_secret_id=PRIVACY_KEY_SECRET)
    service._privacy_key = lambda: parse_secret(  # as ingest.app builds it: the secret, read on first use
        stack.secrets.get_secret_value(SecretId=PRIVACY_KEY_SECRET)["SecretString"]
    )
    return service


def test_a_dropped_field_reaches_neither_the_bus_nor_the_bucket(stack: IngestStack) -> None:
    service = make_service(stack, payload_field_policy="drop:chat.data.update:data.clientIp")
    big = load_sample("chat.data.update")
    big["data"]["notes"] = "x" * 300_000  # over the claim-check threshold: the body goes to S3
    for body in (load_sample("chat.data.update"), big):
        assert post(service, json.dumps(body)).status == 202
    snapshot = stack.snapshot()
    assert len(snapshot["events"]) == 2
    assert any("webhookRef" in e["detail"] and e["detail"]["webhookRef"] for e in snapshot["events"])
    assert CLIENT_IP not in json.dumps(snapshot["events"])
    assert snapshot["objects"]  # the claim check
    assert all(CLIENT_IP.encode() not in body for body in snapshot["objects"].values())
    # ... and the rest of the body is as sent
    (inline,) = [e for e in snapshot["events"] if e["detail"].get("webhook")]
    assert inline["detail"]["webhook"]["data"]["os"] == load_sample("chat.data.update")["data"]["os"]


def test_a_hashed_field_is_the_same_keyed_hash_every_time_and_never_the_value(stack: IngestStack) -> None:
    service = _with_privacy_key(stack, "hash:*:data.clientIp")
    for _ in range(2):
        assert post(service, sample_bytes("chat.data.update")).status == 202
    first, second = (e["detail"]["webhook"]["data"]["clientIp"] for e in stack.captured())
    assert first == second
    assert first.startswith("hmac:")
    assert CLIENT_IP not in first


def test_a_quarantined_body_is_kept_without_the_dropped_field(stack: IngestStack) -> None:
    service = make_service(stack, payload_field_policy="drop:chat.data.update:data.clientIp")
    body = load_sample("chat.data.update")
    body["timestamp"] = "not a timestamp"
    assert post(service, json.dumps(body)).status == 400
    (key,) = stack.objects("quarantine/")
    assert key.startswith(f"quarantine/chat={CHAT}/")  # filed under the chat it names
    assert CLIENT_IP.encode() not in stack.objects("quarantine/")[key]


def test_without_its_key_a_hashed_field_is_dropped_not_kept(stack: IngestStack) -> None:
    service = make_service(stack, payload_field_policy="hash:chat.data.update:data.clientIp")
    service._privacy_key = lambda: (_ for _ in ()).throw(ValueError("no key"))  # the secret unreadable
    assert post(service, sample_bytes("chat.data.update")).status == 202
    (event,) = stack.captured()
    assert "clientIp" not in event["detail"]["webhook"]["data"]
