"""Whatever ingest accepts, the consumers can store within AWS's documented limits.

moto enforces only some of them, so every DynamoDB and S3 request the consumers make is recorded
and held to the limits AWS documents, here:
- DynamoDB ("Constraints in Amazon DynamoDB"): a partition key value of at most 2,048 bytes, a sort
  key value of at most 1,024; an item of at most 400 KB, counting attribute names and values as
  UTF-8 bytes; an attribute name of at most 64 KB (255 bytes for key and projected attributes);
  each expression string at most 4 KB.
- S3: an object key of at most 1,024 bytes of UTF-8; user-defined metadata at most 2 KB.
Hypothesis generates bodies that ingest accepts: ids of up to the model's 128 characters in any
script, many fields with long names, long values, long statuses and names; each goes through the
ingest service's own parsing and validation first, then to its consumer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chats.service import apply_chat_event
from ingest.request import parse_json
from messages.service import store_message
from scenarios.service import store_scenario_run
from shared.contract.envelope import BusDetail
from shared.contract.models import MAX_ID_CHARS, build_metadata, parse_webhook
from shared.storage.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template
from transcripts.service import store_transcript

PARTITION_KEY_BYTES, SORT_KEY_BYTES = 2048, 1024
ITEM_BYTES = 400 * 1024
KEY_OR_PROJECTED_NAME_BYTES, ATTRIBUTE_NAME_BYTES = 255, 64 * 1024
EXPRESSION_BYTES = 4096
S3_KEY_BYTES, S3_METADATA_BYTES = 1024, 2048
KEY_ATTRIBUTES = ("pk", "sk", "gsi1pk", "gsi1sk")
EXPRESSIONS = (
    "UpdateExpression",
    "ConditionExpression",
    "KeyConditionExpression",
    "ProjectionExpression",
    "FilterExpression",
)

# Text in any script (no lone surrogates: ingest refuses those), as ids and as content.
TEXT = st.characters(codec="utf-8")
IDS = st.text(TEXT, min_size=1, max_size=MAX_ID_CHARS)
NAMES = st.text(TEXT, min_size=1, max_size=300)
# Long strings are drawn from sizes around the limits that matter (an inline part, an item).
LONG = st.builds(lambda n: "x" * n, st.sampled_from([0, 1_000, 60_000, 100_000, 130_000, 210_000]))
VALUES = st.one_of(st.text(TEXT, max_size=50), st.integers(min_value=-(2**63), max_value=2**63 - 1), LONG)
# Up to 150 fields: a write naming each field in its expression would pass DynamoDB's 4 KB.
EXTRA = st.one_of(
    st.dictionaries(NAMES, VALUES, max_size=8),
    st.dictionaries(st.text("abcdefghij", min_size=6, max_size=6), st.just(1), min_size=100, max_size=150),
)


def value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        return len(inner.lstrip("-").replace(".", "")) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: member}) for member in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    return 3 + sum(value_size(v) + 1 for v in inner)  # L


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: every attribute's UTF-8 name and its value."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


class Requests:
    """Every request a client makes, with its parameters as sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"provide-client-params.{service}.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))


class World:
    def __init__(self) -> None:
        self.ddb = create_table_from_template()
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.requests = Requests()
        self.requests.attach(self.ddb)
        self.requests.attach(self.s3)
        self.store = Store(self.ddb, self.s3, table=TABLE, bucket=BUCKET, sleep=lambda _: None)

    def problems(self) -> list[str]:
        found: list[str] = []
        for operation, params in self.requests.calls:
            found.extend(f"{operation}: {p}" for p in self._check(operation, params))
        self.requests.calls.clear()
        return found

    def _check(self, operation: str, params: dict[str, Any]) -> Iterator[str]:
        if "Bucket" in params:
            key = params.get("Key", "")
            if len(key.encode()) > S3_KEY_BYTES:
                yield f"S3 key of {len(key.encode())} bytes"
            metadata = params.get("Metadata", {})
            if sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items()) > S3_METADATA_BYTES:
                yield "S3 metadata over 2 KB"
            return
        for name in EXPRESSIONS:
            if len(params.get(name, "").encode()) > EXPRESSION_BYTES:
                yield f"{name} of {len(params[name].encode())} bytes"
        for item in (params.get("Key"), params.get("Item")):
            if item:
                yield from self._item_problems(item)
        if operation == "UpdateItem":  # the item as the update leaves it
            stored = self.ddb.get_item(TableName=TABLE, Key=params["Key"]).get("Item")
            if stored:
                yield from self._item_problems(stored)

    @staticmethod
    def _item_problems(item: dict[str, Any]) -> Iterator[str]:
        for name, limit in (("pk", PARTITION_KEY_BYTES), ("gsi1pk", PARTITION_KEY_BYTES)):
            if name in item and len(item[name]["S"].encode()) > limit:
                yield f"{name} of {len(item[name]['S'].encode())} bytes"
        for name in ("sk", "gsi1sk"):
            if name in item and len(item[name]["S"].encode()) > SORT_KEY_BYTES:
                yield f"{name} of {len(item[name]['S'].encode())} bytes"
        for name in item:
            limit = KEY_OR_PROJECTED_NAME_BYTES if name in KEY_ATTRIBUTES else ATTRIBUTE_NAME_BYTES
            if len(name.encode()) > limit:
                yield f"an attribute name of {len(name.encode())} bytes"
        if item_size(item) > ITEM_BYTES:
            yield f"an item of {item_size(item)} bytes"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


def accepted(body: dict[str, Any]) -> BusDetail:
    """The event ingest puts on the bus for this body, through ingest's own checks (they raise
    for a body ingest refuses)."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    document = parse_json(raw)
    metadata = build_metadata(parse_webhook(document), raw, received_ns=time.time_ns(), delivery_id="d")
    return BusDetail.model_validate({"metadata": metadata, "webhook": document})


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    bot, chat = draw(IDS), draw(IDS)
    long_text = st.text(TEXT, max_size=300) | LONG
    envelope = {"botId": bot, "timestamp": 1672531200000}
    bodies: list[dict[str, Any]] = [
        {
            **envelope,
            "topic": "chat.create",
            "data": {"id": chat, "status": draw(long_text), "user": draw(EXTRA), **draw(EXTRA)},
        },
        {
            **envelope,
            "topic": "chat.update",
            "timestamp": 1672531201000,
            "chat": {"id": chat, "handled_by": draw(long_text), "type": draw(long_text), **draw(EXTRA)},
        },
        {**envelope, "topic": "chat.data.update", "data": {"id": chat, **draw(EXTRA)}},
        {
            **envelope,
            "topic": "chat.scenario.run",
            "data": {"chatId": chat, "scenario": {"id": draw(long_text), "name": draw(long_text)}},
        },
    ]
    messages = [
        {
            "id": draw(IDS),
            "sender": draw(long_text),
            "type": draw(long_text),
            "value": draw(VALUES),
            "timestamp": "1672531205.397183857",
            **draw(EXTRA),
        }
        for _ in range(draw(st.integers(min_value=1, max_value=3)))
    ]
    bodies.extend(
        {**envelope, "topic": "chat.message", "data": {"chatId": chat, **message}} for message in messages
    )
    bodies.append({**envelope, "topic": "chat.close", "data": {"id": chat, "conversation": messages}})
    return bodies


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(bodies=conversations())
def test_every_request_the_consumers_make_is_within_awss_limits(
    world: World, bodies: list[dict[str, Any]]
) -> None:
    for body in bodies:
        detail = accepted(body)
        topic = detail.metadata.topic
        if topic == "chat.close":
            store_transcript(detail, world.store)
        elif topic == "chat.scenario.run":
            store_scenario_run(detail, world.store)
        elif topic == "chat.message":
            store_message(detail, world.store)
        else:
            apply_chat_event(detail, world.store)
        assert world.problems() == [], topic


def test_the_checks_refuse_what_aws_refuses(world: World) -> None:
    # The checker itself: a sort key, an item and an expression over the limits are each named.
    assert list(World._item_problems({"pk": {"S": "a"}, "sk": {"S": "é" * 600}})) == ["sk of 1200 bytes"]
    assert list(World._item_problems({"pk": {"S": "a"}, "big": {"S": "x" * ITEM_BYTES}})) == [
        f"an item of {ITEM_BYTES + 6} bytes"
    ]
    assert list(world._check("Query", {"KeyConditionExpression": "S" * 5000})) == [
        "KeyConditionExpression of 5000 bytes"
    ]
    assert list(world._check("PutObject", {"Bucket": "b", "Key": "k" * 1025})) == ["S3 key of 1025 bytes"]
