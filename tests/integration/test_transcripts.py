"""chat.close: the transcript in S3 under a stable key, missing messages filled in, the chat closed."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chats.service import apply_chat_event
from messages.service import store_message
from shared.envelope import BusDetail
from shared.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template, table_items
from tests.conftest import ROOT
from transcripts.service import store_transcript, transcript_key

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
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.store = Store(
            self.ddb, self.s3, table=TABLE, bucket=BUCKET, clock_s=lambda: 0, sleep=lambda _: None
        )

    def close(self, d: BusDetail | None = None) -> dict[str, Any]:
        return store_transcript(d or detail("chat.close"), self.store, self.s3, BUCKET)

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
        store_message(detail(topic), env.store, env.s3)
    result = env.close()
    # The transcript has 10 messages; 5 came as message webhooks. The other 5 (scenario, button_click
    # without an id, rating_request, rating, url) are filled in.
    assert result["messagesFilledIn"] == 5
    items, _ = env.state()
    messages = [i for i in items if i["sk"].startswith("MSG#")]
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
        (apply_chat_event if not topic.endswith("message") else store_message)(
            detail(topic), env.store, env.s3
        )
    env.close()
    in_order = env.state()
    for item in table_items(env.ddb):
        env.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}})
    env.close()
    for topic in reversed(["chat.create", "chat.update", *MESSAGE_TOPICS]):
        (apply_chat_event if not topic.endswith("message") else store_message)(
            detail(topic), env.store, env.s3
        )
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
