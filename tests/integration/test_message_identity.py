"""A message is its id: every delivery of one message id, from any topic, whatever its timestamp
says, in any order, ends as exactly one message item, the same item as one clean delivery.

Ebbot spells a message's instant differently in each place (milliseconds with a 9-digit fraction
in message webhooks, seconds in transcripts, sometimes a number, sometimes none). Hypothesis adds to
a clean delivery of a conversation (each message by its own topic and by chat.message, and the
chat.close transcript) further deliveries of the same messages with the instant respelled (seconds
or milliseconds, string or number, fewer fraction digits, missing), then shuffles everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from shared.contract.envelope import BusDetail
from tests.integration.test_delivery_order_property import World, to_detail, webhook

BOT = "ebprop0000000000000000000000000"[:30]
CHAT = "1672531200.003.0a0b0c0d-0000-4000-8000-000000000003"
BASE_MS = 1_672_531_201_000
SENDERS = ("user", "bot", "agent", "system")


def message(index: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{index:012d}",
        "sender": SENDERS[index % 4],
        "type": "text",
        "value": f"text {index}",
    }


def instant(index: int) -> int:
    """The clean instant of message `index`, in ns: distinct milliseconds, a full nanosecond part."""
    return (BASE_MS + 10 * index) * 10**6 + 123_456_789 % 10**6 + index


# How the same instant (ns) can be spelled; the clean spellings give it to the nanosecond.
def spelled(ns: int, how: str) -> Any:
    seconds, ms = ns // 10**9, ns // 10**6
    return {
        "ms-string-9": f"{ms}.{ns % 10**6:06d}000",
        "s-string-9": f"{seconds}.{ns % 10**9:09d}",
        "s-string-3": f"{seconds}.{ns % 10**9 // 10**6:03d}",
        "ms-string-0": str(ms),
        "ms-number": ms,
        "s-number": ns / 10**9,
        "missing": None,
    }[how]


RESPELLINGS = ("ms-string-9", "s-string-9", "s-string-3", "ms-string-0", "ms-number", "s-number", "missing")


def delivery(index: int, route: str, how: str) -> BusDetail:
    """One delivery of message `index` by `route` (its own topic, chat.message or the close)."""
    stamp = spelled(instant(index), how)
    body = message(index)
    if stamp is not None:
        body["timestamp"] = stamp
    topic = f"chat.{body['sender']}.message" if route == "own" else "chat.message"
    return to_detail(webhook(topic, CHAT, instant(index) // 10**6, {"chatId": CHAT, **body}))


def close(count: int, how: list[str]) -> BusDetail:
    conversation = []
    for index in range(count):
        body = message(index)
        stamp = spelled(instant(index), how[index])
        if stamp is not None:
            body["timestamp"] = stamp
        conversation.append(body)
    return to_detail(
        webhook("chat.close", CHAT, BASE_MS + 60_000, {"id": CHAT, "conversation": conversation})
    )


def clean(count: int) -> list[BusDetail]:
    """Each message once by its own topic and once by chat.message (as Ebbot's webhooks spell it:
    milliseconds), and the close (seconds): the reference."""
    routes = [delivery(i, route, "ms-string-9") for i in range(count) for route in ("own", "generic")]
    return [*routes, close(count, ["s-string-9"] * count)]


def message_items(world: World, details: list[BusDetail]) -> list[dict[str, Any]]:
    items, _ = world.run(details)
    return [i for i in items if i["sk"].startswith("MSG#")]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


def test_the_clean_delivery_is_one_item_per_message_with_its_own_instant(world: World) -> None:
    items = message_items(world, clean(3))
    assert [i["sk"] for i in items] == [f"MSG#id#{message(i)['id']}" for i in range(3)]
    assert [int(i["atNs"]) for i in items] == [instant(i) for i in range(3)]
    assert all(i["sources"] == {f"chat.{SENDERS[n]}.message", "chat.message"} for n, i in enumerate(items))
    assert json.loads(items[0]["message"]) == message(0)


def test_a_message_known_only_from_its_transcript_has_no_sources_and_is_counted(world: World) -> None:
    items, _ = world.run([close(2, ["s-string-9", "missing"])])
    messages = [i for i in items if i["sk"].startswith("MSG#")]
    assert len(messages) == 2
    assert all("sources" not in m for m in messages)
    # Without a timestamp of its own, the message takes the close's instant.
    assert int(messages[1]["atNs"]) == (BASE_MS + 60_000) * 10**6


@settings(max_examples=30)
@given(data=st.data())
def test_any_interleaving_of_respelled_deliveries_ends_as_one_clean_delivery(
    world: World, data: st.DataObject
) -> None:
    count = data.draw(st.integers(min_value=1, max_value=4), label="messages")
    expected = message_items(world, clean(count))
    extra = data.draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=count - 1),
                st.sampled_from(("own", "generic", "close")),
                st.sampled_from(RESPELLINGS),
            ),
            max_size=8,
        ),
        label="respelled deliveries",
    )
    respelled = [
        close(count, [how] * count) if route == "close" else delivery(index, route, how)
        for index, route, how in extra
    ]
    shuffled = data.draw(st.permutations(clean(count) + respelled), label="order")
    assert message_items(world, shuffled) == expected


# --- a table written before one item per id -----------------------------------------------------


def old_form_item(index: int, sources: list[str]) -> dict[str, Any]:
    """A message item exactly as the previous version wrote it: keyed by instant and id, each field
    of the message in an `m_<name>` attribute."""
    body = message(index)
    ns = instant(index)
    item: dict[str, Any] = {
        "pk": {"S": f"CHAT#{CHAT}"},
        "sk": {"S": f"MSG#{ns:020d}#{body['id']}"},
        "entity": {"S": "message"},
        "botId": {"S": BOT},
        "chatId": {"S": CHAT},
        "messageId": {"S": body["id"]},
        "hasId": {"BOOL": True},
        "at": {"S": "2023-01-01T00:00:01.000000Z"},
        "atNs": {"S": str(ns)},
        "sender": {"S": body["sender"]},
        "type": {"S": body["type"]},
        "m_value": {"S": json.dumps(body["value"])},
    }
    if sources:
        item["sources"] = {"SS": sources}
    return item


def test_a_table_of_the_previous_form_keeps_working(world: World) -> None:
    # GIVEN messages 0 and 1 stored by the previous version (1 only from a transcript)
    world.run([])
    for index, sources in ((0, ["chat.user.message"]), (1, [])):
        world.ddb.put_item(TableName="ebbot-webhooks-test-table", Item=old_form_item(index, sources))
    # WHEN the close of the chat arrives, THEN it fills in only message 2: 0 and 1 are found by id
    result = world.store.message_keys(CHAT)
    assert result == {message(0)["id"], message(1)["id"]}
    from transcripts.service import store_transcript

    assert store_transcript(close(3, ["s-string-9"] * 3), world.store)["messagesFilledIn"] == 1
    # AND a late webhook of message 0 writes the current form; readers see one message per id
    world.deliver(delivery(0, "generic", "ms-string-9"))
    listed = world.store.messages(CHAT)
    assert [m["key"] for m in listed] == [message(i)["id"] for i in range(3)]
    assert [m["message"]["value"] for m in listed] == ["text 0", "text 1", "text 2"]
    assert listed[0]["sources"] == ["chat.message"]  # the current item, not the older one
    assert listed[1]["message"] == message(1)  # read from its m_<name> attributes
