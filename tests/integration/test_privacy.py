"""Erase, export and find, against moto (tools/privacy.py, docs/privacy.md): after an erase no item
and no object version or delete marker holds the chat's id or its text, and nothing brings it back;
an export holds everything stored; the user index finds exactly a person's chats."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from chats.service import apply_chat_event
from messages.service import store_message
from scenarios.service import store_scenario_run
from shared.contract.envelope import BusDetail
from shared.storage.bucket import CLAIM_CHECK_PREFIX, QUARANTINE_PREFIX, SPILL_PREFIX, chat_prefix
from shared.storage.chat_state import CHAT_STATE_TOPICS
from shared.storage.privacy import tombstone_pk
from shared.storage.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template, versioned_bucket
from tests.conftest import ROOT, TOPICS
from tools.privacy import Target
from transcripts.service import store_transcript

KEY = b"privacy-key-for-tests-0123456789abcdef"
CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"  # every sample's chat
OTHER = "1672531999.001.0a0b0c0d-0000-4000-8000-00000000beef"
USER = "b1e3f5a7-2c4d-4e6f-8a0b-1c3d5e7f9a2b"  # chat.user.update's data.user.id, chat.update's too
SERVICES = {
    **dict.fromkeys(CHAT_STATE_TOPICS, apply_chat_event),
    **{topic: store_message for topic in TOPICS if topic.endswith(".message")},
    "chat.scenario.run": store_scenario_run,
    "chat.close": store_transcript,
}


def event_detail(topic: str, chat: str = CHAT) -> BusDetail:
    event = json.loads((ROOT / "events" / "eventbridge" / f"{topic}.json").read_text())
    return BusDetail.model_validate_json(json.dumps(event["detail"]).replace(CHAT, chat))


def texts(chat: str = CHAT) -> set[str]:
    """What of the chat must not survive its erase: its id, and the text of its messages."""
    close = json.loads((ROOT / "events" / "webhooks" / "chat.close.json").read_text())
    values = {m["value"] for m in close["data"]["conversation"] if isinstance(m.get("value"), str)}
    return {chat} | {v for v in values if len(v) >= 12}


class World:
    def __init__(self) -> None:
        self.ddb, self.s3 = create_table_from_template(), versioned_bucket()
        self.store = Store(self.ddb, self.s3, table=TABLE, bucket=BUCKET, privacy_key=lambda: KEY)
        self.target = Target(self.ddb, self.s3, TABLE, BUCKET, KEY, tombstone_days=400, sleep=lambda _: None)

    def deliver(self, topic: str, chat: str = CHAT) -> Any:
        return SERVICES[topic](event_detail(topic, chat), self.store)

    def deliver_everything(self, chat: str = CHAT) -> None:
        """Every sample; a second close on another day (a second transcript); a claim-checked close;
        a message too large for its item (an oversize part); a spilled event and a quarantined body
        filed under the chat; and an object overwritten and deleted (versions, a delete marker)."""
        for topic in TOPICS:
            self.deliver(topic, chat)
        later = event_detail("chat.close", chat).model_dump()
        later["webhook"]["timestamp"] += 3 * 86_400_000
        later["metadata"]["occurredAtNs"] = str(int(later["metadata"]["occurredAtNs"]) + 3 * 86_400 * 10**9)
        later["metadata"]["bodySha256"] = hashlib.sha256(b"later").hexdigest()
        store_transcript(BusDetail.model_validate(later), self.store)
        raw = json.dumps(event_detail("chat.close", chat).webhook).encode()
        ref_key = f"{chat_prefix(CLAIM_CHECK_PREFIX, chat)}dt=2023-01-01/d-claim.json"
        self.s3.put_object(Bucket=BUCKET, Key=ref_key, Body=raw)
        claimed = event_detail("chat.close", chat).model_dump()
        claimed["webhook"] = None
        claimed["webhookRef"] = {
            "bucket": BUCKET,
            "key": ref_key,
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        store_transcript(BusDetail.model_validate(claimed), self.store)
        big = event_detail("chat.user.message", chat).model_dump()
        big["webhook"]["data"]["id"] = "big-message"
        big["webhook"]["data"]["value"] = f"{chat} " + "long text " * 30_000
        store_message(BusDetail.model_validate(big), self.store)
        for prefix, name in ((SPILL_PREFIX, "d-spill.json"), (QUARANTINE_PREFIX, "d-bad.bin")):
            key = f"{chat_prefix(prefix, chat)}dt=2023-01-01/{name}"
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=raw)
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=raw + b" ")  # a second version
        self.s3.delete_object(
            Bucket=BUCKET, Key=f"{chat_prefix(SPILL_PREFIX, chat)}dt=2023-01-01/d-spill.json"
        )

    # --- what is there ---------------------------------------------------------------------------

    def items(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in self.ddb.get_paginator("scan").paginate(TableName=TABLE):
            found.extend(page["Items"])
        return found

    def versions(self) -> list[dict[str, Any]]:
        """Every object version and delete marker in the bucket, with its body (None for a marker)."""
        found = []
        listing = self.s3.list_object_versions(Bucket=BUCKET)
        for version in listing.get("Versions", []):
            body = self.s3.get_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
            found.append({"key": version["Key"], "body": body["Body"].read()})
        found.extend({"key": m["Key"], "body": None} for m in listing.get("DeleteMarkers", []))
        return found

    def holding(self, needles: set[str]) -> tuple[list[str], list[str]]:
        """(item keys, object keys) that hold any of `needles` anywhere: key, attribute or body."""
        items = [
            f"{i['pk']['S']} {i['sk']['S']}" for i in self.items() if any(n in json.dumps(i) for n in needles)
        ]
        objects = [
            v["key"]
            for v in self.versions()
            if any(n in v["key"] or (v["body"] is not None and n.encode() in v["body"]) for n in needles)
        ]
        return items, objects


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


def _partition_counts(world: World, chat: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for item in world.items():
        if item["pk"]["S"] == f"CHAT#{chat}":
            counts[item["sk"]["S"].split("#")[0]] += 1
        if item["sk"]["S"] == f"CHAT#{chat}" and item["pk"]["S"].startswith("USER#"):
            counts["USER"] += 1
    return counts


def test_erase_leaves_nothing_of_the_chat_and_its_receipt_counts_what_was_there(world: World) -> None:
    world.deliver_everything(CHAT)
    world.deliver_everything(OTHER)
    before = _partition_counts(world, CHAT)
    items, objects = world.holding(texts(CHAT))
    assert (before["OBJ"], before["USER"]) == (2, 1)  # two transcripts, one user
    assert before["MSG"] >= 10
    assert items  # the check below finds what it looks for
    assert objects
    versions_before = Counter(
        v["key"].split("/")[0] for v in world.versions() if CHAT in v["key"] or _mine(world, v)
    )
    other_before = world.holding({OTHER})

    receipt = world.target.erase(CHAT, settle_s=0)

    assert world.holding({CHAT}) == ([], [])  # (the other chat has the same message texts)
    assert world.holding({OTHER}) == other_before  # another chat, untouched
    assert receipt.items == Counter(
        {
            "chat": before["CHAT"],
            "messages": before["MSG"],
            "scenario runs": before["RUN"],
            "object records": before["OBJ"],
            "user index entries": before["USER"],
        }
    )
    by_kind = {
        "transcripts": "transcripts",
        "claim-checked bodies": "claim-check",
        "spilled events": "spill",
        "quarantined bodies": "quarantine",
        "oversize parts": "oversize",
    }
    deleted = {by_kind[k]: n for k, n in receipt.objects.items()} | {
        f"{by_kind[k]} markers": n for k, n in receipt.delete_markers.items()
    }
    assert sum(deleted.values()) == sum(versions_before.values())
    assert (deleted["spill markers"], deleted["spill"], deleted["transcripts"]) == (1, 2, 2)
    # The receipt names no chat, user or message: the tombstone's key is a keyed hash.
    printed = str(receipt) + json.dumps(receipt.as_dict())
    assert not any(secret in printed for secret in texts(CHAT) | {USER})
    assert receipt.tombstone == tombstone_pk(KEY, CHAT)
    # ... and the tombstone itself is all that is left, keyed by that hash, with its expiry
    (tomb,) = [i for i in world.items() if i["pk"]["S"].startswith("ERASED#")]
    assert tomb["pk"]["S"] == tombstone_pk(KEY, CHAT)
    assert int(tomb["expiresAt"]["N"]) > 0


def _mine(world: World, version: dict[str, Any]) -> bool:
    """An object whose key does not name the chat (oversize parts) but whose body does."""
    return (
        version["key"].startswith("oversize/")
        and version["body"] is not None
        and CHAT.encode() in version["body"]
    )


def test_erasing_twice_is_safe_and_a_dry_run_deletes_nothing(world: World) -> None:
    world.deliver_everything(CHAT)
    dry = world.target.erase(CHAT, dry_run=True)
    assert world.holding({CHAT}) != ([], [])  # nothing deleted
    done = world.target.erase(CHAT, settle_s=0)
    assert world.holding(texts(CHAT)) == ([], [])  # neither the id nor any message's text
    assert (dry.items, dry.objects, dry.delete_markers) == (done.items, done.objects, done.delete_markers)
    again = world.target.erase(CHAT, settle_s=0)
    assert again.total() == 0
    assert "nothing was stored for this chat" in str(again)


def test_an_erased_chat_stays_erased(world: World) -> None:
    world.deliver_everything(CHAT)
    world.target.erase(CHAT, settle_s=0)
    # a late webhook, a redrive or a replay of every topic: the consumers store nothing for it
    for topic in TOPICS:
        world.deliver(topic)
    assert world.holding({CHAT}) == ([], [])
    # while a chat that was not erased is stored as before
    world.deliver("chat.create", OTHER)
    assert world.holding({OTHER})[0]


def test_what_the_consumers_write_while_an_erase_runs_is_deleted_by_its_second_pass(world: World) -> None:
    world.deliver_everything(CHAT)
    # An invocation that read no tombstone before it was written writes during the erase's wait.
    in_flight = Store(world.ddb, world.s3, table=TABLE, bucket=BUCKET)  # it saw no tombstone
    world.target.sleep = lambda _: store_message(event_detail("chat.bot.message"), in_flight)  # type: ignore[assignment]
    receipt = world.target.erase(CHAT, settle_s=20)
    assert receipt.late == 1
    assert world.holding(texts(CHAT)) == ([], [])


def test_export_holds_everything_stored_and_round_trips(world: World) -> None:
    world.deliver_everything(CHAT)
    document = world.target.export(CHAT)
    assert json.loads(json.dumps(document)) == document
    assert document["chatId"] == CHAT
    state = document["chat"]["state"]
    assert state["session"]["clientIp"] == "203.0.113.42"  # chat.data.update's data
    assert state["user"]["first_name"] == "Identical"
    stored = world.store.messages(CHAT)
    assert [m["key"] for m in document["messages"]] == [m["key"] for m in stored]
    assert [m["atNs"] for m in document["messages"]] == sorted(m["atNs"] for m in document["messages"])
    assert len(document["scenarioRuns"]) == 1
    close = json.loads((ROOT / "events" / "webhooks" / "chat.close.json").read_text())
    assert len(document["transcripts"]) == 2
    assert document["transcripts"][0]["body"]["data"]["conversation"] == close["data"]["conversation"]
    assert world.target.export(OTHER)["messages"] == []  # nothing of another chat


def test_find_lists_exactly_a_persons_chats_and_not_an_erased_one(world: World) -> None:
    world.deliver("chat.user.update", CHAT)
    world.deliver("chat.update", OTHER)
    world.deliver("chat.create", "1672531999.002.0a0b0c0d-0000-4000-8000-00000000f00d")  # no user id
    assert world.target.find(USER) == sorted([CHAT, OTHER])
    assert world.target.find("someone-else") == []
    # the index's keys hold a keyed hash, never the value (the chat's own state keeps its user)
    index = [i for i in world.items() if i["pk"]["S"].startswith("USER#")]
    assert len(index) == 2
    assert not any(USER in json.dumps(i) for i in index)
    world.target.erase(CHAT, settle_s=0)
    assert world.target.find(USER) == [OTHER]


def test_a_context_user_id_is_indexed_when_not_empty(world: World) -> None:
    update = copy.deepcopy(event_detail("chat.status.change").model_dump())
    update["webhook"]["context"]["user_id"] = "ebbot-user-77"
    apply_chat_event(BusDetail.model_validate(update), world.store)
    assert world.target.find("ebbot-user-77") == [CHAT]
    assert world.target.find("") == []
