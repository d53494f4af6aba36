"""Property: any order and any repetition of a conversation's webhooks ends in the same table and bucket.

EventBridge promises at-least-once delivery and no order. Hypothesis generates conversations with
same-millisecond ties, id-less messages, chat.close before its messages, and messages delivered by
both chat.message and chat.<sender>.message; delivery shuffled and duplicated must end exactly where
in-order delivery ends. A fixed conversation is checked against a hand-written result too, so a
consumer that writes nothing cannot pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chats.service import apply_chat_event
from messages.service import store_message
from scenarios.service import store_scenario_run
from shared.contract.envelope import BusDetail
from shared.contract.models import build_metadata, parse_webhook
from shared.storage.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template, table_items
from transcripts.service import store_transcript

BOT = "ebprop0000000000000000000000000"[:30]
BASE_MS = 1_672_531_200_000


@dataclass(frozen=True)
class Message:
    index: int
    sender: str
    kind: str
    has_id: bool
    ns: int
    ms_form: bool  # stamped in milliseconds in its message webhook, seconds in the transcript
    topics: tuple[str, ...]

    def body(self, in_transcript: bool) -> dict[str, Any]:
        stamp = (
            f"{self.ns // 10**6}.{self.ns % 10**6:06d}000"
            if self.ms_form and not in_transcript
            else f"{self.ns // 10**9}.{self.ns % 10**9:09d}"
        )
        message: dict[str, Any] = {
            "sender": self.sender,
            "type": self.kind,
            "value": {"label": f"option {self.index}"}
            if self.kind == "button_click"
            else f"text {self.index}",
            "timestamp": stamp,
        }
        if self.has_id:
            message["id"] = f"00000000-0000-4000-8000-{self.index:012d}"
        return message


def webhook(topic: str, chat: str, at_ms: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "botId": BOT, "data": data, "requestId": f"r-{topic}-{at_ms}", "timestamp": at_ms}


def to_detail(body: dict[str, Any]) -> BusDetail:
    raw = json.dumps(body).encode()
    metadata = build_metadata(parse_webhook(body), raw, received_ns=time.time_ns(), delivery_id="d")
    return BusDetail.model_validate({"metadata": metadata, "webhook": body})


messages_strategy = st.lists(
    st.tuples(
        st.sampled_from(["user", "bot", "agent", "system"]),
        st.sampled_from(["text", "button_click", "rating", "url"]),
        st.booleans(),  # has an id
        st.integers(min_value=0, max_value=30),  # ms offset: collisions give same-millisecond ties
        st.integers(min_value=0, max_value=999_999),  # sub-millisecond part, in ns
        st.booleans(),  # millisecond form
        st.sampled_from(["sender", "generic", "both", "lost"]),  # which topics deliver it
    ),
    min_size=1,
    max_size=6,
)


def conversation(chat: str, raw: list[tuple[Any, ...]], statuses: list[tuple[int, str]]) -> list[BusDetail]:
    messages = []
    for i, (sender, kind, has_id, offset_ms, sub_ns, ms_form, via) in enumerate(raw):
        topics = {
            "sender": (f"chat.{sender}.message",),
            "generic": ("chat.message",),
            "both": (f"chat.{sender}.message", "chat.message"),
            "lost": (),
        }[via]
        ns = (BASE_MS + 1000 + offset_ms) * 10**6 + sub_ns
        messages.append(Message(i, sender, kind, has_id or kind != "button_click", ns, ms_form, topics))
    events = [
        webhook("chat.create", chat, BASE_MS, {"id": chat, "status": "ongoing", "user": {"first_name": "A"}})
    ]
    for offset, status in statuses:
        events.append(webhook("chat.status.change", chat, BASE_MS + offset, {"id": chat, "status": status}))
    events.append(webhook("chat.data.update", chat, BASE_MS + 5, {"id": chat, "os": "Linux"}))
    events.append(
        webhook(
            "chat.scenario.run", chat, BASE_MS + 7, {"chatId": chat, "scenario": {"id": "s_1", "name": "n"}}
        )
    )
    events.extend(
        webhook(topic, chat, m.ns // 10**6, {"chatId": chat, **m.body(in_transcript=False)})
        for m in messages
        for topic in m.topics
    )
    close_ms = BASE_MS + 60_000
    transcript = [m.body(in_transcript=True) for m in sorted(messages, key=lambda m: m.ns)]
    events.append(webhook("chat.close", chat, close_ms, {"id": chat, "conversation": transcript}))
    return [to_detail(e) for e in events]


class World:
    def __init__(self) -> None:
        self.ddb = create_table_from_template()
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        self.store = Store(
            self.ddb, self.s3, table=TABLE, bucket=BUCKET, clock_s=lambda: 0, sleep=lambda _: None
        )

    def deliver(self, detail: BusDetail) -> None:
        topic = detail.metadata.topic
        if topic == "chat.close":
            store_transcript(detail, self.store)
        elif topic == "chat.scenario.run":
            store_scenario_run(detail, self.store)
        elif topic.endswith(".message"):
            store_message(detail, self.store)
        else:
            apply_chat_event(detail, self.store)

    def run(self, details: list[BusDetail]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        for item in table_items(self.ddb):
            self.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}})
        for obj in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            self.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
        for detail in details:
            self.deliver(detail)
        items = [{k: v for k, v in i.items() if k != "rev"} for i in table_items(self.ddb)]
        listing = self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return items, {
            o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing
        }


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


@settings(max_examples=25)
@given(
    raw=messages_strategy,
    statuses=st.lists(
        st.tuples(st.integers(0, 10), st.sampled_from(["queued", "ongoing", "handled"])), max_size=3
    ),
    data=st.data(),
)
def test_shuffled_and_duplicated_delivery_ends_where_in_order_delivery_ends(
    world: World, raw: list[tuple[Any, ...]], statuses: list[tuple[int, str]], data: st.DataObject
) -> None:
    chat = "1672531200.001.0a0b0c0d-0000-4000-8000-000000000001"
    details = conversation(chat, raw, statuses)
    expected = world.run(details)
    duplicates = data.draw(st.lists(st.sampled_from(details), max_size=len(details)))
    shuffled = data.draw(st.permutations(details + duplicates))
    assert world.run(shuffled) == expected
    # and the close first, everything else after, still agrees
    close_first = sorted(details, key=lambda d: d.metadata.topic != "chat.close")
    assert world.run(close_first) == expected


def test_fixed_conversation_in_order_matches_the_hand_written_result(world: World) -> None:
    chat = "1672531200.002.0a0b0c0d-0000-4000-8000-000000000002"
    raw = [
        ("user", "text", True, 0, 0, True, "both"),
        ("bot", "button_click", False, 0, 500, False, "sender"),  # same millisecond, no id
        ("user", "rating", True, 3, 0, False, "lost"),  # its webhook never arrives
    ]
    items, objects = world.run(conversation(chat, raw, [(6, "queued"), (6, "handled")]))
    summary = [
        (i["sk"].split("#")[0], i.get("type") or i.get("status") or i.get("scenarioName")) for i in items
    ]
    assert sorted(summary) == [
        ("CHAT", "chat_closed"),
        ("MSG", "button_click"),
        ("MSG", "rating"),
        ("MSG", "text"),
        ("OBJ", None),  # where the transcript is (shared.storage.privacy), for erase and export
        ("RUN", "n"),
    ]
    (chat_item,) = [i for i in items if i["sk"] == "CHAT"]
    assert chat_item["closedAt"] == "2023-01-01T00:01:00.000000Z"
    # A chat's messages in time order: its message items, ordered by their instant.
    messages = sorted((i for i in items if i["sk"].startswith("MSG#")), key=lambda m: int(m["atNs"]))
    assert [m["atNs"] for m in messages] == [
        "1672531201000000000",
        "1672531201000000500",
        "1672531201003000000",
    ]
    assert [m["type"] for m in messages] == ["text", "button_click", "rating"]
    assert [sorted(m.get("sources", [])) for m in messages] == [
        ["chat.message", "chat.user.message"],
        ["chat.bot.message"],
        [],
    ]
    assert list(objects) == [f"transcripts/bot={BOT}/dt=2023-01-01/{chat}.json"]
