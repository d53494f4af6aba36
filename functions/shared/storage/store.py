"""The single DynamoDB table (docs/data-model.md) and the idempotent writes every consumer makes.

Key design, per chat partition `CHAT#<chatId>`:
- `CHAT`                         the chat's state (last-writer-wins registers, shared.storage.chat_state)
- `MSG#id#<key>`                 one item per message id (`atNs` orders them); tables written
                                 before 2026-12-02 may also hold `MSG#<20-digit ns>#<key>` items
- `RUN#<20-digit ns>#<hash>`     one item per scenario run
- `OBJ#<s3 key>`                 where one of the chat's S3 objects is (shared.storage.privacy)
and, keyed by a keyed hash: `ERASED#…` tombstones, `USER#…` the user index (shared.storage.privacy).
GSI1 (`BOT#<botId>`, `<20-digit ns first seen>`) lists a bot's chats by start.

Open-ended parts of a payload (message values, chat fields) are stored as JSON strings, so that
DynamoDB's limits on nesting (32 levels) and numbers never make an event fail forever; a JSON part
too large for the 400 KB item goes to S3 under `oversize/` and the item keeps its key.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from shared.contract.envelope import BusDetail
from shared.contract.timestamps import ns_to_iso
from shared.storage.bucket import Bucket, oversize_key
from shared.storage.chat_state import ChatState, ChatUpdate
from shared.storage.claim_check import resolve_webhook
from shared.storage.privacy import TOMBSTONE_SK, object_record_sk, tombstone_pk, user_pk

# A JSON part above this goes to S3; an item then stays far below DynamoDB's 400 KB limit.
INLINE_JSON_LIMIT = 96 * 1024
# A message item holds the whole message as one JSON attribute, so its expression and item size do
# not grow with the number of fields Ebbot sends; this much of it is inline, the rest in S3.
MESSAGE_INLINE_LIMIT = 200 * 1024
# Strings lifted out of the body into top-level attributes (sender, type, scenario names, the chat's
# status...) only up to this length: an unbounded one would make the item too large to write. A
# longer one stays in the JSON it came from.
MAX_ATTRIBUTE_CHARS = 256
# Which delivery of a message the item keeps, by where it came from: the message's own topic, then
# chat.message, then a chat.close transcript (docs/data-model.md, "Message items").
GENERIC_MESSAGE_TOPIC = "chat.message"
SOURCE_RANK_OWN_TOPIC, SOURCE_RANK_GENERIC, SOURCE_RANK_TRANSCRIPT = 3, 2, 1
# Optimistic-concurrency retries on the chat item before the invocation fails (and is retried).
MAX_CHAT_WRITE_ATTEMPTS = 8


def chat_pk(chat_id: str) -> str:
    return f"CHAT#{chat_id}"


def message_sk(key: str) -> str:
    return f"MSG#id#{key}"


def key_of_message_sk(sk: str) -> str:
    """The message key in a message item's sort key, in either form: `MSG#id#<key>`, and the
    `MSG#<20-digit ns>#<key>` of tables written before one item per id."""
    rest = sk.removeprefix("MSG#")
    if rest.startswith("id#"):
        return rest[3:]
    return rest.split("#", 1)[1]


# Fields the item carries in attributes of its own: the message's JSON leaves them out, so that two
# deliveries that differ only in how they spell the instant, or in where the chat id sits, agree.
_CARRIED_BY_THE_ITEM = ("timestamp", "chatId")


def message_content(message: dict[str, Any]) -> dict[str, Any]:
    """The message as the item keeps it: every field but its instant and its chat (atNs, chatId)."""
    return {k: v for k, v in message.items() if k not in _CARRIED_BY_THE_ITEM}


def message_version(*, source: str | None, own_precision: int | None, ns: int, content: Any) -> str:
    """The order in which deliveries of one message win, the same in every delivery order:
    1. an instant of the message's own, the more digits of a second it gives the better (a webhook
       without `data.timestamp` borrows its envelope's, a transcript message without one the close's);
    2. where it came from: the message's own topic, then chat.message, then a chat.close transcript;
    3. then 64 bits of the content's sha256, and the instant itself: a total order.
    The item keeps the instant and the content of the delivery with the highest version."""
    instant = f"1{own_precision}" if own_precision is not None else "00"
    rank = (
        SOURCE_RANK_TRANSCRIPT
        if source is None
        else SOURCE_RANK_GENERIC
        if source == GENERIC_MESSAGE_TOPIC
        else SOURCE_RANK_OWN_TOPIC
    )
    canonical = json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    return f"{instant}#{rank}#{hashlib.sha256(canonical.encode()).hexdigest()[:16]}#{ns:020d}"


def run_sk(ns: int, identity: str) -> str:
    return f"RUN#{ns:020d}#{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


class ChatWriteConflictError(Exception):
    """The chat item kept changing under us; the invocation fails and Lambda retries it."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: bool  # False: the item was already there (a duplicate delivery), nothing changed


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _short(value: Any) -> str | None:
    """A non-empty string short enough for a top-level attribute, else None."""
    return value if isinstance(value, str) and value and len(value) <= MAX_ATTRIBUTE_CHARS else None


class Store:
    def __init__(
        self,
        dynamodb: Any,
        s3: Any,
        *,
        table: str,
        bucket: str,
        retention_days: int = 0,
        clock_s: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        privacy_key: Callable[[], bytes] | None = None,
    ) -> None:
        self._ddb = dynamodb
        # The keyed hash's key, read on first use (shared.runtime.consumer): tombstones and the
        # user index. Without one (tests of other things) neither is read nor written.
        self._privacy_key = privacy_key
        # The consumers' one way to S3: claim-checked bodies, oversize parts, transcripts.
        self.bucket = Bucket(s3, bucket)
        self._table = table
        self._retention_days = retention_days
        self._clock_s = clock_s
        self._sleep = sleep

    # --- helpers -------------------------------------------------------------------------------

    def webhook(self, detail: BusDetail) -> dict[str, Any]:
        """The webhook body of an event, read from the bucket when it was claim-checked."""
        return resolve_webhook(detail, self.bucket.s3)

    def _ttl(self) -> dict[str, dict[str, str]]:
        if not self._retention_days:
            return {}
        return {"expiresAt": _n(int(self._clock_s()) + self._retention_days * 86400)}

    def json_attr(
        self, value: Any, *, pk: str, sk: str, name: str, limit: int = INLINE_JSON_LIMIT
    ) -> dict[str, dict[str, str]]:
        """`{name: {"S": json}}`, or `{name + "Ref": {"S": s3 key}}` when the JSON is too large."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        encoded = text.encode("utf-8")
        if len(encoded) <= limit:
            return {name: _s(text)}
        key = oversize_key(f"{pk}|{sk}", name, encoded)
        self.bucket.put_part(key, encoded)
        return {f"{name}Ref": _s(key)}

    def _put_once(self, item: dict[str, Any]) -> WriteResult:
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return WriteResult(written=False)
            raise
        return WriteResult(written=True)

    # --- personal data: tombstones, object records, the user index ------------------------------

    def is_erased(self, chat_id: str) -> bool:
        """Whether the chat was erased (`tools erase`): its tombstone exists. One strongly
        consistent read of a key-only item."""
        if self._privacy_key is None:
            return False
        response = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": _s(tombstone_pk(self._privacy_key(), chat_id)), "sk": _s(TOMBSTONE_SK)},
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in response

    def record_object(self, chat_id: str, key: str) -> None:
        """Record that `key` in the bucket holds this chat's data, before it is written: erase and
        export find it without listing the bucket. Idempotent."""
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "pk": _s(chat_pk(chat_id)),
                "sk": _s(object_record_sk(key)),
                "entity": _s("object"),
                "key": _s(key),
                **self._ttl(),
            },
        )

    def _index_users(self, chat_id: str, user_ids: frozenset[str], indexed: set[str]) -> set[str]:
        """Write the user index entries this chat does not have yet; the chat's full set after."""
        if self._privacy_key is None or not user_ids:
            return indexed
        key = self._privacy_key()
        wanted = {user_pk(key, user_id) for user_id in user_ids}
        for pk in sorted(wanted - indexed):
            self._ddb.put_item(
                TableName=self._table,
                Item={"pk": _s(pk), "sk": _s(chat_pk(chat_id)), "entity": _s("userChat"), **self._ttl()},
            )
        return indexed | wanted

    # --- messages ------------------------------------------------------------------------------

    def put_message(
        self,
        *,
        bot_id: str,
        chat_id: str,
        key: str,
        has_id: bool,
        ns: int,
        message: dict[str, Any],
        source: str | None,
        own_precision: int | None = None,
    ) -> WriteResult:
        """Store one delivery of a message: one item per message key, whatever the delivery.

        The item keeps the delivery with the highest version (message_version): its instant (`at`,
        `atNs`) and its fields but the instant and the chat id, as one JSON attribute. `sources` is
        the set of message topics that delivered it (absent for a message known only from a
        chat.close transcript: its webhook never arrived).
        The result is the same in any order and however often each arrives. One write when this
        delivery wins or adds nothing new; a second (ADD to `sources`) when a delivery that loses
        comes by a topic not yet recorded. `written` is True only for the delivery that created it.
        """
        pk, sk = chat_pk(chat_id), message_sk(key)
        kept = message_content(message)
        version = message_version(source=source, own_precision=own_precision, ns=ns, content=kept)
        content: dict[str, Any] = {
            "entity": _s("message"),
            "botId": _s(bot_id),
            "chatId": _s(chat_id),
            "messageId": _s(key),
            "hasId": {"BOOL": has_id},
            "at": _s(ns_to_iso(ns)),
            "atNs": _s(str(ns)),
            "version": _s(version),
            **self.json_attr(kept, pk=pk, sk=sk, name="message", limit=MESSAGE_INLINE_LIMIT),
            **{k: _s(v) for k in ("sender", "type") if (v := _short(kept.get(k)))},
            **self._ttl(),
        }
        names = {f"#a{i}": name for i, name in enumerate(content)}
        values = {f":a{i}": value for i, value in enumerate(content.values())}
        clauses = ["SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(content)))]
        # What an earlier winner had and this one has not goes, so the item is this delivery's.
        dropped = [name for name in ("sender", "type", "message", "messageRef") if name not in content]
        if dropped:
            names.update({f"#d{i}": name for i, name in enumerate(dropped)})
            clauses.append("REMOVE " + ", ".join(f"#d{i}" for i in range(len(dropped))))
        if source:
            names["#src"] = "sources"
            values[":src"] = {"SS": [source]}
            clauses.append("ADD #src :src")
        names["#v"] = "version"
        values[":v"] = _s(version)
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key={"pk": _s(pk), "sk": _s(sk)},
                UpdateExpression=" ".join(clauses),
                ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # A delivery that loses: the item keeps its content; only a new topic is recorded.
            stored = exc.response.get("Item", {})
            if source and source not in stored.get("sources", {}).get("SS", []):
                self._ddb.update_item(
                    TableName=self._table,
                    Key={"pk": _s(pk), "sk": _s(sk)},
                    UpdateExpression="ADD #src :src",
                    ExpressionAttributeNames={"#src": "sources"},
                    ExpressionAttributeValues={":src": {"SS": [source]}},
                )
            return WriteResult(written=False)
        # ALL_OLD returns nothing when the item did not exist: this delivery created it.
        return WriteResult(written="messageId" not in response.get("Attributes", {}))

    def message_keys(self, chat_id: str) -> set[str]:
        """The keys (message ids) of the messages already stored for a chat: one Query, keys only,
        items of either sort-key form.

        Eventually consistent, at half the read units (billed by whole items, not the keys
        returned): a message written a moment ago and not seen here is written again by the
        caller, which put_message makes harmless (the same item, written=False)."""
        keys: set[str] = set()
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
            ExpressionAttributeValues={":pk": _s(chat_pk(chat_id)), ":msg": _s("MSG#")},
            ProjectionExpression="sk",
            ConsistentRead=False,
        ):
            keys.update(key_of_message_sk(item["sk"]["S"]) for item in page["Items"])
        return keys

    def messages(self, chat_id: str) -> list[dict[str, Any]]:
        """A chat's messages in time order: one Query of its message items, of either sort-key
        form, one per key (an item of the current form wins over an older one for the same key),
        ordered by instant, then key. Each is `{"key", "atNs", "at", "sources", "message"}`, the
        message's JSON read back (from the bucket when it was too large for its item)."""
        found: dict[str, dict[str, Any]] = {}
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
            ExpressionAttributeValues={":pk": _s(chat_pk(chat_id)), ":msg": _s("MSG#")},
        ):
            for item in page["Items"]:
                key = key_of_message_sk(item["sk"]["S"])
                current = item["sk"]["S"] == message_sk(key)
                if key in found and not current:
                    continue
                found[key] = {
                    "key": key,
                    "atNs": int(item["atNs"]["S"]),
                    "at": item["at"]["S"],
                    "sources": sorted(item.get("sources", {}).get("SS", [])),
                    "message": self._message_of(item),
                }
        return sorted(found.values(), key=lambda m: (m["atNs"], m["key"]))

    def _message_of(self, item: dict[str, Any]) -> dict[str, Any]:
        if "message" in item:
            kept: dict[str, Any] = json.loads(item["message"]["S"])
            return kept
        if "messageRef" in item:
            kept = json.loads(self.bucket.get(item["messageRef"]["S"]))
            return kept
        # The form written before one item per id: each field its own m_<name> attribute.
        message: dict[str, Any] = {}
        for name, value in item.items():
            if name.startswith("m_"):
                ref = name.endswith("Ref")
                field = name[2:-3] if ref else name[2:]
                message[field] = json.loads(self.bucket.get(value["S"]) if ref else value["S"])
        message.update({k: item[k]["S"] for k in ("sender", "type") if k in item})
        if item.get("hasId", {}).get("BOOL"):
            message["id"] = item["messageId"]["S"]
        return message

    # --- scenario runs -------------------------------------------------------------------------

    def put_run(self, *, bot_id: str, chat_id: str, ns: int, identity: str, scenario: Any) -> WriteResult:
        pk, sk = chat_pk(chat_id), run_sk(ns, identity)
        scenario_map = scenario if isinstance(scenario, dict) else {}
        item = {
            "pk": _s(pk),
            "sk": _s(sk),
            "entity": _s("scenarioRun"),
            "botId": _s(bot_id),
            "chatId": _s(chat_id),
            "at": _s(ns_to_iso(ns)),
            "atNs": _s(str(ns)),
            **{
                attr: _s(v)
                for attr, k in (("scenarioId", "id"), ("scenarioName", "name"))
                if (v := _short(scenario_map.get(k)))
            },
            **self.json_attr(scenario, pk=pk, sk=sk, name="scenario"),
            **self._ttl(),
        }
        return self._put_once(item)

    # --- chat state ----------------------------------------------------------------------------

    def get_chat(self, chat_id: str) -> tuple[ChatState, int | None, dict[str, Any]]:
        """The chat's state, its revision (None if the item does not exist) and the raw item."""
        response = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": _s(chat_pk(chat_id)), "sk": _s("CHAT")},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return ChatState(), None, {}
        if "stateRef" in item:
            state = ChatState.from_json(self.bucket.get(item["stateRef"]["S"]).decode("utf-8"))
        else:
            state = ChatState.from_json(item.get("state", {}).get("S"))
        return state, int(item["rev"]["N"]), item

    def apply_chat_update(
        self, *, bot_id: str, chat_id: str, update: ChatUpdate, user_ids: frozenset[str] = frozenset()
    ) -> WriteResult:
        """Merge one webhook into the chat item: read, merge, write if changed, retry on a race.
        `user_ids` (the Ebbot user ids the webhook names) go into the user index, each once per
        chat: the chat item lists the index entries it has (`userIndex`), for erase to remove."""
        for attempt in range(MAX_CHAT_WRITE_ATTEMPTS):
            state, rev, item = self.get_chat(chat_id)
            indexed = set(item.get("userIndex", {}).get("SS", []))
            index = self._index_users(chat_id, user_ids, indexed)
            if not state.merge(update) and index == indexed:
                return WriteResult(written=False)  # older or duplicate: nothing to do
            if self._write_chat(bot_id, chat_id, state, rev, index):
                return WriteResult(written=True)
            self._sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 (jitter, not crypto)
        raise ChatWriteConflictError(f"chat item kept changing after {MAX_CHAT_WRITE_ATTEMPTS} attempts")

    def _write_chat(
        self, bot_id: str, chat_id: str, state: ChatState, rev: int | None, user_index: set[str]
    ) -> bool:
        pk = chat_pk(chat_id)
        first, last = state.span_ns()
        item: dict[str, Any] = {
            "pk": _s(pk),
            "sk": _s("CHAT"),
            "entity": _s("chat"),
            "botId": _s(bot_id),
            "chatId": _s(chat_id),
            "rev": _n((rev or 0) + 1),
            "gsi1pk": _s(f"BOT#{bot_id}"),
            # Keyed by start, which (unlike the last activity) no later event moves: an index
            # entry whose key moves costs a delete and a put on every chat event. The chat id is
            # not repeated here (it is projected): the key need not be unique, and every byte of
            # the item is paid for on every write.
            "gsi1sk": _s(f"{first:020d}"),
            "lastActivityAt": _s(ns_to_iso(last)),
            "firstSeenAt": _s(ns_to_iso(first)),
            **self._projection(state),
            **({"userIndex": {"SS": sorted(user_index)}} if user_index else {}),
            **self._ttl(),
        }
        state_json = state.to_json()
        if len(state_json.encode("utf-8")) <= INLINE_JSON_LIMIT * 2:
            item["state"] = _s(state_json)
        else:
            item.update(self.json_attr(json.loads(state_json), pk=pk, sk="CHAT", name="state"))
        condition = "attribute_not_exists(pk)" if rev is None else "rev = :rev"
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if rev is not None:
            kwargs["ExpressionAttributeValues"] = {":rev": _n(rev)}
        try:
            self._ddb.put_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    @staticmethod
    def _projection(state: ChatState) -> dict[str, dict[str, str]]:
        """Top-level attributes for queries and the GSI: the current values of a few fields."""
        out: dict[str, dict[str, str]] = {}
        for attr, group, name in (
            ("status", "status", "status"),
            ("handledBy", "status", "handled_by"),
            ("chatType", "status", "type"),
            ("closedAt", "close", "closedAt"),
            ("transcriptKey", "close", "transcriptKey"),
        ):
            # A long value stays in `state` only: the index and the item have room for short ones.
            value = _short(state.value(group, name))
            if value:
                out[attr] = _s(value)
        return out
