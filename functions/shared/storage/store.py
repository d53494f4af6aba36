"""The single DynamoDB table (docs/data-model.md) and the idempotent writes every consumer makes.

Key design, per chat partition `CHAT#<chatId>`:
- `CHAT`                         the chat's state (last-writer-wins registers, shared.storage.chat_state)
- `MSG#<20-digit ns>#<key>`      one item per message, in time order
- `RUN#<20-digit ns>#<hash>`     one item per scenario run
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

# A JSON part above this goes to S3; an item then stays far below DynamoDB's 400 KB limit.
INLINE_JSON_LIMIT = 96 * 1024
# Message fields kept as top-level attributes (or implied by the key) rather than as m_<name> JSON.
# The timestamp's text differs between deliveries (seconds or milliseconds); atNs is exact.
_MESSAGE_KEY_FIELDS = frozenset({"id", "sender", "type", "timestamp", "chatId"})
# Optimistic-concurrency retries on the chat item before the invocation fails (and is retried).
MAX_CHAT_WRITE_ATTEMPTS = 8


def chat_pk(chat_id: str) -> str:
    return f"CHAT#{chat_id}"


def message_sk(ns: int, key: str) -> str:
    return f"MSG#{ns:020d}#{key}"


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
    ) -> None:
        self._ddb = dynamodb
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

    def json_attr(self, value: Any, *, pk: str, sk: str, name: str) -> dict[str, dict[str, str]]:
        """`{name: {"S": json}}`, or `{name + "Ref": {"S": s3 key}}` when the JSON is too large."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        encoded = text.encode("utf-8")
        if len(encoded) <= INLINE_JSON_LIMIT:
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
    ) -> WriteResult:
        """Store a message once, whichever delivery comes first: the result is the same in any order.

        The item holds what every delivery of the message agrees on (id, sender, type, the exact
        instant, the value and any other fields, each kept from its first writer) and `sources`, the
        set of message topics that delivered it (absent for a message known only from a chat.close
        transcript: its webhook never arrived). `written` is True only for the delivery that created it.
        """
        pk, sk = chat_pk(chat_id), message_sk(ns, key)
        fields: dict[str, dict[str, str]] = {}
        for name, value in sorted(message.items()):
            if name not in _MESSAGE_KEY_FIELDS:
                fields.update(self.json_attr(value, pk=pk, sk=sk, name=f"m_{name}"))
        stable: dict[str, Any] = {
            "entity": _s("message"),
            "botId": _s(bot_id),
            "chatId": _s(chat_id),
            "messageId": _s(key),
            "hasId": {"BOOL": has_id},
            "at": _s(ns_to_iso(ns)),
            "atNs": _s(str(ns)),
            **{k: _s(v) for k in ("sender", "type") if isinstance(v := message.get(k), str) and v},
            **fields,
        }
        names = {f"#a{i}": name for i, name in enumerate(stable)}
        values = {f":a{i}": value for i, value in enumerate(stable.values())}
        sets = [f"#a{i} = if_not_exists(#a{i}, :a{i})" for i in range(len(stable))]
        ttl = self._ttl()
        if ttl:
            names["#ttl"] = "expiresAt"
            values[":ttl"] = ttl["expiresAt"]
            sets.append("#ttl = :ttl")
        expression = "SET " + ", ".join(sets)
        if source:
            names["#src"] = "sources"
            values[":src"] = {"SS": [source]}
            expression += " ADD #src :src"
        response = self._ddb.update_item(
            TableName=self._table,
            Key={"pk": _s(pk), "sk": _s(sk)},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        # ALL_OLD returns nothing when the item did not exist: this delivery created it.
        return WriteResult(written="messageId" not in response.get("Attributes", {}))

    def message_keys(self, chat_id: str) -> set[str]:
        """Sort keys of the messages already stored for a chat (one Query, keys only).

        Eventually consistent, at half the read units (billed by whole items, not the keys
        returned): a message written a moment ago and not seen here is written again by the
        caller, which put_message makes a no-op (every attribute if_not_exists; written=False)."""
        keys: set[str] = set()
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
            ExpressionAttributeValues={":pk": _s(chat_pk(chat_id)), ":msg": _s("MSG#")},
            ProjectionExpression="sk",
            ConsistentRead=False,
        ):
            keys.update(item["sk"]["S"] for item in page["Items"])
        return keys

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
                if isinstance(v := scenario_map.get(k), str) and v
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

    def apply_chat_update(self, *, bot_id: str, chat_id: str, update: ChatUpdate) -> WriteResult:
        """Merge one webhook into the chat item: read, merge, write if changed, retry on a race."""
        for attempt in range(MAX_CHAT_WRITE_ATTEMPTS):
            state, rev, _ = self.get_chat(chat_id)
            if not state.merge(update):
                return WriteResult(written=False)  # older or duplicate: nothing to do
            if self._write_chat(bot_id, chat_id, state, rev):
                return WriteResult(written=True)
            self._sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 (jitter, not crypto)
        raise ChatWriteConflictError(f"chat item kept changing after {MAX_CHAT_WRITE_ATTEMPTS} attempts")

    def _write_chat(self, bot_id: str, chat_id: str, state: ChatState, rev: int | None) -> bool:
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
            value = state.value(group, name)
            if isinstance(value, str) and value:
                out[attr] = _s(value)
        return out
