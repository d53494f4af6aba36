"""chat.close: the transcript in S3 under a stable key, missing messages filled in, the chat closed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from chats.service import apply_chat_event
from messages.service import store_message
from shared.contract.envelope import BusDetail
from shared.storage.bucket import MAX_TRANSCRIPT_ATTEMPTS, TranscriptWriteConflictError, transcript_key
from shared.storage.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template, table_items, versioned_bucket
from tests.conftest import ROOT
from transcripts.service import store_transcript

BOT = "ebq7k3m9x2p4n8r1t5v6w0y3z7c2d4"
CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"
KEY = f"transcripts/bot={BOT}/dt=2023-01-01/{CHAT}.json"  # written by hand
MESSAGE_TOPICS = [
    "chat.user.message",
    "chat.bot.message",
    "chat.agent.message",
    "chat.system.message",
    "chat.message",
]


def detail(topic: str) -> BusDetail:
    event = json.loads((ROOT / "events" / "eventbridge" / f"{topic}.json").read_text())
    return BusDetail.model_validate(event["detail"])


class Env:
    def __init__(self) -> None:
        self.ddb = create_table_from_template()
        self.s3 = versioned_bucket()
        self.store = Store(
            self.ddb, self.s3, table=TABLE, bucket=BUCKET, clock_s=lambda: 0, sleep=lambda _: None
        )

    def close(self, d: BusDetail | None = None) -> dict[str, Any]:
        return store_transcript(d or detail("chat.close"), self.store)

    def state(self) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        items = [{k: v for k, v in i.items() if k != "rev"} for i in table_items(self.ddb)]
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        objects = {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}
        return items, objects


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def test_key_layout() -> None:
    assert transcript_key(BOT, CHAT, 1672531221000000000) == KEY
    assert transcript_key("b/x", "a b/../c", 0) == "transcripts/bot=b%2Fx/dt=1970-01-01/a%20b%2F..%2Fc.json"


def test_transcript_object_checksum_and_chat_pointer(env: Env) -> None:
    result = env.close()
    assert result == {"transcriptKey": KEY, "messagesFilledIn": 10, "objectWritten": True}
    head = env.s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    body = env.s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert head["ContentType"] == "application/json"
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert json.loads(body) == json.loads((ROOT / "events" / "webhooks" / "chat.close.json").read_text())
    items, _ = env.state()
    (chat,) = [i for i in items if i["sk"] == "CHAT"]
    assert chat["status"] == "chat_closed"
    assert chat["closedAt"] == "2023-01-01T00:00:21.000000Z"
    assert chat["transcriptKey"] == KEY


def test_missing_messages_are_filled_in_and_counted(env: Env) -> None:
    for topic in MESSAGE_TOPICS:
        store_message(detail(topic), env.store)
    result = env.close()
    # The transcript has 10 messages; 5 came as message webhooks. The other 5 (scenario, button_click
    # without an id, rating_request, rating, url) are filled in.
    assert result["messagesFilledIn"] == 5
    items, _ = env.state()
    # A chat's messages in time order: its message items, ordered by their instant.
    messages = sorted((i for i in items if i["sk"].startswith("MSG#")), key=lambda m: int(m["atNs"]))
    assert len(messages) == 10
    assert [m["type"] for m in messages] == [
        "scenario",
        "url",
        "button_click",
        "text",
        "text_info",
        "text",
        "text",
        "rating_request",
        "rating",
        "url",
    ]
    assert sum(1 for m in messages if not m["hasId"]) == 1
    # Messages whose webhook never arrived have no `sources`: that is how a lost webhook shows.
    assert [m["type"] for m in messages if "sources" not in m] == [
        "scenario",
        "button_click",
        "rating_request",
        "rating",
        "url",
    ]


def test_a_replayed_close_writes_nothing_new(env: Env) -> None:
    env.close()
    before = env.state()
    assert env.close() == {"transcriptKey": KEY, "messagesFilledIn": 0, "objectWritten": False}
    assert env.state() == before
    versions = env.s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
    assert len(versions) == 1


def test_close_before_its_messages_ends_like_the_in_order_case(env: Env) -> None:
    for topic in ["chat.create", "chat.update", *MESSAGE_TOPICS]:
        (apply_chat_event if not topic.endswith("message") else store_message)(detail(topic), env.store)
    env.close()
    in_order = env.state()
    for item in table_items(env.ddb):
        env.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}})
    env.close()
    for topic in reversed(["chat.create", "chat.update", *MESSAGE_TOPICS]):
        (apply_chat_event if not topic.endswith("message") else store_message)(detail(topic), env.store)
    assert env.state() == in_order


def test_a_claim_checked_close_is_resolved(env: Env) -> None:
    raw = (ROOT / "events" / "webhooks" / "chat.close.json").read_bytes()
    env.s3.put_object(Bucket=BUCKET, Key="claim-check/dt=2023-01-01/d.json", Body=raw)
    d = detail("chat.close").model_dump()
    d["webhook"] = None
    d["webhookRef"] = {
        "bucket": BUCKET,
        "key": "claim-check/dt=2023-01-01/d.json",
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    assert env.close(BusDetail.model_validate(d))["messagesFilledIn"] == 10
    assert json.loads(env.s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()) == json.loads(raw)


def test_the_date_comes_from_the_close_not_the_receive_time(env: Env) -> None:
    d = detail("chat.close").model_dump()
    d["metadata"]["receivedAt"] = "2024-06-01T00:00:00.000000Z"
    late = copy.deepcopy(d)
    assert env.close(BusDetail.model_validate(late))["transcriptKey"] == KEY


def _later_close(seconds: int, extra_messages: int) -> BusDetail:
    """The sample close, `seconds` later the same day, its transcript `extra_messages` longer (a
    chat reopened and closed again): another body, so another hash."""
    d = detail("chat.close").model_dump()
    webhook = d["webhook"]
    webhook["timestamp"] += seconds * 1000
    conversation = webhook["data"]["conversation"]
    for i in range(extra_messages):
        conversation.append({**conversation[-1], "id": f"again-{i}"})
    raw = json.dumps(webhook).encode()
    ns = int(d["metadata"]["occurredAtNs"]) + seconds * 10**9
    d["metadata"] |= {"occurredAtNs": str(ns), "bodySha256": hashlib.sha256(raw).hexdigest()}
    return BusDetail.model_validate(d)


def _stored_transcript(env: Env) -> dict[str, Any]:
    return json.loads(env.s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())  # type: ignore[no-any-return]


def test_a_new_transcript_costs_one_put_and_no_head(env: Env) -> None:
    # GIVEN the S3 requests of a close are recorded
    operations: list[str] = []
    env.s3.meta.events.register("before-call.s3", lambda model, **_: operations.append(model.name))
    # WHEN a chat closes for the first time THEN its transcript is one conditional PUT
    assert env.close()["objectWritten"] is True
    assert operations == ["PutObject"]
    # and a redelivery reads the object's metadata and writes nothing
    operations.clear()
    assert env.close()["objectWritten"] is False
    assert operations == ["PutObject", "HeadObject"]  # the refused conditional PUT, then the check


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_the_later_close_of_a_day_is_the_transcript_in_any_order(env: Env, order: str) -> None:
    # GIVEN a chat closed twice on one day, the second time with 3 more messages
    first, second = detail("chat.close"), _later_close(seconds=60, extra_messages=3)
    deliveries = [first, second] if order == "in order" else [second, first]
    # WHEN both closes arrive, in either order
    results = [env.close(d) for d in deliveries]
    # THEN the object is the later transcript, and only a write that made it so happened
    stored = _stored_transcript(env)
    assert len(stored["data"]["conversation"]) == len(second.webhook["data"]["conversation"])  # type: ignore[index]
    assert [r["objectWritten"] for r in results] == ([True, True] if order == "in order" else [True, False])
    versions = env.s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
    assert len(versions) == (2 if order == "in order" else 1)
    # and the chat item points at it, closed at the later instant
    items, _ = env.state()
    (chat,) = [i for i in items if i["sk"] == "CHAT"]
    assert chat["closedAt"] == "2023-01-01T00:01:21.000000Z"


def test_a_transcript_written_before_versions_were_recorded_is_replaced_by_another_close(env: Env) -> None:
    # GIVEN an object written by an earlier release: its sha256 in metadata, no version
    env.s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"{}", Metadata={"sha256": "0" * 64})
    # WHEN the chat's close arrives THEN it replaces the object
    assert env.close()["objectWritten"] is True
    assert len(_stored_transcript(env)["data"]["conversation"]) == 10


def test_a_transcript_that_keeps_changing_fails_the_invocation_for_a_retry(env: Env) -> None:
    # GIVEN another writer replaces the object (new bytes each time) between each of our reads
    # and conditional writes
    env.close(_later_close(seconds=-10, extra_messages=0))  # an earlier close that day is there
    races: list[int] = []

    def racing_writer(params: dict[str, Any], **_: Any) -> None:
        if "IfMatch" in params:
            races.append(len(races))
            env.s3.meta.events.unregister("before-parameter-build.s3.PutObject", racing_writer)
            env.s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(races).encode())
            env.s3.meta.events.register("before-parameter-build.s3.PutObject", racing_writer)

    env.s3.meta.events.register("before-parameter-build.s3.PutObject", racing_writer)
    # WHEN the later close is stored THEN it gives up after its attempts, for Lambda to retry
    with pytest.raises(TranscriptWriteConflictError):
        env.close()
    assert len(races) == MAX_TRANSCRIPT_ATTEMPTS - 1  # every attempt after the refused create
    # and a retry once the other writer has stopped stores it
    env.s3.meta.events.unregister("before-parameter-build.s3.PutObject", racing_writer)
    assert env.close()["objectWritten"] is True
    assert len(_stored_transcript(env)["data"]["conversation"]) == 10


def test_a_transcript_deleted_between_the_refused_create_and_the_read_is_created_again(env: Env) -> None:
    # GIVEN an earlier close of the day is stored, and is deleted just before our read of it
    env.close(_later_close(seconds=-10, extra_messages=0))

    def delete_first(**_: Any) -> None:
        env.s3.meta.events.unregister("before-parameter-build.s3.HeadObject", delete_first)
        env.s3.delete_object(Bucket=BUCKET, Key=KEY)

    env.s3.meta.events.register("before-parameter-build.s3.HeadObject", delete_first)
    # WHEN the later close is stored THEN it is created again, not lost to the missing object
    assert env.close()["objectWritten"] is True
    assert len(_stored_transcript(env)["data"]["conversation"]) == 10
