"""Answer a person's requests about their data (docs/privacy.md): erase a chat, export a chat, find
a person's chats. Each reads the chat's own partition and its own S3 prefixes (recorded as its
objects were written: shared.storage.privacy), never a scan of the table or a listing of the bucket.

    python -m tools erase --chat ID (--local | --stack NAME) [--dry-run]
    python -m tools export --chat ID (--local | --stack NAME) [-o FILE]
    python -m tools find --user VALUE (--local | --stack NAME)

Erase writes the chat's tombstone first (the consumers then store nothing more for it), deletes
every item and every S3 object version and delete marker that holds the chat's data, waits for
invocations that started before the tombstone to end, and does it again for anything they wrote.
Its receipt counts what it deleted by kind, with no personal data in it. Running it twice is safe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.contract.timestamps import ns_to_iso
from shared.storage.bucket import (
    CLAIM_CHECK_PREFIX,
    OVERSIZE_PREFIX,
    QUARANTINE_PREFIX,
    SPILL_PREFIX,
    TRANSCRIPTS_PREFIX,
    chat_prefix,
)
from shared.storage.privacy import (
    OBJECT_RECORD_PREFIX,
    TOMBSTONE_SK,
    load_privacy_key,
    tombstone_pk,
    user_pk,
)
from shared.storage.store import Store, chat_pk
from tools.cli import CommandError

# Long enough for a consumer invocation that read no tombstone to end: the functions' Timeout (15 s).
SETTLE_S = 20
OBJECT_KINDS = {
    TRANSCRIPTS_PREFIX: "transcripts",
    CLAIM_CHECK_PREFIX: "claim-checked bodies",
    SPILL_PREFIX: "spilled events",
    QUARANTINE_PREFIX: "quarantined bodies",
    OVERSIZE_PREFIX: "oversize parts",
}
ITEM_KINDS = {
    "CHAT": "chat",
    "MSG#": "messages",
    "RUN#": "scenario runs",
    OBJECT_RECORD_PREFIX: "object records",
}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _item_kind(sk: str) -> str:
    return next((kind for prefix, kind in ITEM_KINDS.items() if sk.startswith(prefix)), "other items")


def _object_kind(key: str) -> str:
    return next((kind for prefix, kind in OBJECT_KINDS.items() if key.startswith(prefix)), "other objects")


@dataclass
class Target:
    """Where a stack keeps its data, and the clients to reach it."""

    dynamodb: Any
    s3: Any
    table: str
    bucket: str
    privacy_key: bytes
    tombstone_days: int
    clock_s: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def store(self) -> Store:
        return Store(self.dynamodb, self.s3, table=self.table, bucket=self.bucket)

    # --- reading a chat ---------------------------------------------------------------------------

    def items(self, chat_id: str) -> list[dict[str, Any]]:
        """Every item of the chat's partition (strongly consistent)."""
        found: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(chat_pk(chat_id))},
            ConsistentRead=True,
        ):
            found.extend(page["Items"])
        return found

    @staticmethod
    def recorded_keys(items: list[dict[str, Any]]) -> set[str]:
        """The S3 keys the items name: object records, the chat's transcript, every `…Ref` part."""
        keys = set()
        for item in items:
            if item["sk"]["S"].startswith(OBJECT_RECORD_PREFIX) and "key" in item:
                keys.add(item["key"]["S"])
            for name, value in item.items():
                if (name == "transcriptKey" or name.endswith("Ref")) and "S" in value:
                    keys.add(value["S"])
        return keys

    @staticmethod
    def prefixes(chat_id: str, items: list[dict[str, Any]]) -> set[str]:
        """The chat's own prefixes: its claim checks, spills and quarantined bodies, and the
        oversize parts of each of its items (shared.storage.store.Store.json_attr)."""
        own = {chat_prefix(p, chat_id) for p in (CLAIM_CHECK_PREFIX, SPILL_PREFIX, QUARANTINE_PREFIX)}
        for item in items:
            owner = f"{item['pk']['S']}|{item['sk']['S']}"
            own.add(f"{OVERSIZE_PREFIX}{hashlib.sha256(owner.encode()).hexdigest()[:32]}/")
        return own

    def versions(self, prefix: str, exact: bool = False) -> Iterator[tuple[str, str, bool]]:
        """(key, version id, is a delete marker) of every version under `prefix` (of the key itself
        when `exact`)."""
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                if not exact or version["Key"] == prefix:
                    yield version["Key"], version["VersionId"], False
            for marker in page.get("DeleteMarkers", []):
                if not exact or marker["Key"] == prefix:
                    yield marker["Key"], marker["VersionId"], True

    def chat_versions(self, chat_id: str, items: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
        found = {v for key in self.recorded_keys(items) for v in self.versions(key, exact=True)}
        found |= {v for prefix in self.prefixes(chat_id, items) for v in self.versions(prefix)}
        return sorted(found)

    # --- erase ------------------------------------------------------------------------------------

    def tombstone(self, chat_id: str) -> dict[str, dict[str, str]]:
        now = self.clock_s()
        item = {
            "pk": _s(tombstone_pk(self.privacy_key, chat_id)),
            "sk": _s(TOMBSTONE_SK),
            "entity": _s("tombstone"),
            "erasedAt": _s(ns_to_iso(int(now * 1e9))),
        }
        if self.tombstone_days:
            item["expiresAt"] = {"N": str(int(now) + self.tombstone_days * 86400)}
        return item

    def erase_once(self, chat_id: str, receipt: Receipt, *, dry_run: bool) -> None:
        items = self.items(chat_id)
        chat = next((i for i in items if i["sk"]["S"] == "CHAT"), {})
        index = [(pk, chat_pk(chat_id)) for pk in chat.get("userIndex", {}).get("SS", [])]
        versions = self.chat_versions(chat_id, items)  # before the items that name them go
        for item in items:
            receipt.items[_item_kind(item["sk"]["S"])] += 1
        if index:  # a receipt lists only what there was
            receipt.items["user index entries"] += len(index)
        for key, _, marker in versions:
            (receipt.delete_markers if marker else receipt.objects)[_object_kind(key)] += 1
        if dry_run:
            return
        keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items] + index
        for start in range(0, len(keys), 25):
            self._delete_items(keys[start : start + 25])
        for start in range(0, len(versions), 1000):
            batch = versions[start : start + 1000]
            response = self.s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k, "VersionId": v} for k, v, _ in batch], "Quiet": True},
            )
            if response.get("Errors"):
                codes = sorted({e.get("Code", "?") for e in response["Errors"]})
                raise CommandError(
                    f"S3 refused to delete {len(response['Errors'])} object version(s): {codes}", 3
                )

    def _delete_items(self, keys: list[tuple[str, str]]) -> None:
        requests = {self.table: [{"DeleteRequest": {"Key": {"pk": _s(pk), "sk": _s(sk)}}} for pk, sk in keys]}
        for attempt in range(8):
            unprocessed = self.dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems", {})
            if not unprocessed:
                return
            requests = unprocessed
            self.sleep(0.05 * 2**attempt)
        raise CommandError("DynamoDB kept refusing the deletes (throttled): run erase again", 3)

    def erase(self, chat_id: str, *, dry_run: bool = False, settle_s: float = SETTLE_S) -> Receipt:
        receipt = Receipt(dry_run=dry_run, tombstone=tombstone_pk(self.privacy_key, chat_id))
        if not dry_run:
            tombstone = self.tombstone(chat_id)
            self.dynamodb.put_item(TableName=self.table, Item=tombstone)
            receipt.tombstone_expires = (
                ns_to_iso(int(tombstone["expiresAt"]["N"]) * 10**9) if "expiresAt" in tombstone else "never"
            )
        self.erase_once(chat_id, receipt, dry_run=dry_run)
        if not dry_run:
            # An invocation that read no tombstone before it was written may still be writing.
            self.sleep(settle_s)
            late = Receipt(dry_run=False, tombstone=receipt.tombstone)
            self.erase_once(chat_id, late, dry_run=False)
            receipt.late = late.total()
            receipt.items.update(late.items)
            receipt.objects.update(late.objects)
            receipt.delete_markers.update(late.delete_markers)
        return receipt

    # --- export and find ---------------------------------------------------------------------------

    def export(self, chat_id: str) -> dict[str, Any]:
        items = self.items(chat_id)
        store = self.store()
        document: dict[str, Any] = {"chatId": chat_id, "exportedAt": ns_to_iso(int(self.clock_s() * 1e9))}
        chat = next((i for i in items if i["sk"]["S"] == "CHAT"), None)
        if chat is not None:
            state, _, _ = store.get_chat(chat_id)
            document["chat"] = {
                **{
                    k: chat[k]["S"]
                    for k in ("botId", "status", "firstSeenAt", "lastActivityAt", "closedAt")
                    if k in chat
                },
                "state": json.loads(state.to_json()).get("values", {}),
            }
        document["messages"] = store.messages(chat_id)
        document["scenarioRuns"] = [
            {
                "at": run["at"]["S"],
                "scenario": json.loads(
                    store.bucket.get(run["scenarioRef"]["S"])
                    if "scenarioRef" in run
                    else run["scenario"]["S"]
                ),
            }
            for run in items
            if run["sk"]["S"].startswith("RUN#")
        ]
        transcripts = sorted(k for k in self.recorded_keys(items) if k.startswith(TRANSCRIPTS_PREFIX))
        document["transcripts"] = [
            {"key": key, "body": json.loads(body)}
            for key in transcripts
            if (body := self._current(key)) is not None
        ]
        return document

    def _current(self, key: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return body

    def find(self, user_value: str) -> list[str]:
        """The chat ids the user index lists for an Ebbot user id, erased chats left out."""
        chats: list[str] = []
        for page in self.dynamodb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(user_pk(self.privacy_key, user_value))},
            ConsistentRead=True,
        ):
            chats.extend(item["sk"]["S"].removeprefix("CHAT#") for item in page["Items"])
        return sorted(c for c in chats if not self._erased(c))

    def _erased(self, chat_id: str) -> bool:
        key = {"pk": _s(tombstone_pk(self.privacy_key, chat_id)), "sk": _s(TOMBSTONE_SK)}
        return "Item" in self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)


@dataclass
class Receipt:
    """What an erase deleted (or would, in a dry run), by kind: counts only, no personal data."""

    dry_run: bool
    tombstone: str
    items: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    delete_markers: Counter[str] = field(default_factory=Counter)
    tombstone_expires: str | None = None
    late: int = 0

    def total(self) -> int:
        return sum(self.items.values()) + sum(self.objects.values()) + sum(self.delete_markers.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "tombstone": self.tombstone,
            "tombstoneExpires": self.tombstone_expires,
            "items": dict(sorted(self.items.items())),
            "objectVersions": dict(sorted(self.objects.items())),
            "deleteMarkers": dict(sorted(self.delete_markers.items())),
            "writtenDuringTheErase": self.late,
        }

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"erase receipt ({'dry run: nothing deleted' if self.dry_run else 'done'})"]
        for title, counts in (
            ("table items", self.items),
            ("S3 object versions", self.objects),
            ("S3 delete markers", self.delete_markers),
        ):
            for kind, count in sorted(counts.items()):
                lines.append(f"  {verb} {count:>6}  {title}: {kind}")
        if not self.total():
            lines.append("  nothing was stored for this chat")
        if not self.dry_run:
            lines.append(f"  tombstone {self.tombstone}, kept until {self.tombstone_expires}")
            if self.late:
                lines.append(f"  of these, {self.late} were written by invocations in flight, and deleted")
        return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------------------


def target(args: argparse.Namespace) -> Target:
    """The local stack (--local) or a deployed one (--stack), as redrive finds them."""
    from tools.running import target_clients

    outputs, (dynamodb, s3, secrets) = target_clients(args, ("dynamodb", "s3", "secretsmanager"))
    for needed in ("PrivacyKeySecretArn", "TableName", "DataBucketName"):
        if needed not in outputs:
            raise CommandError(
                f"the stack has no {needed} output: deploy this version of template.yaml first"
            )
    key = load_privacy_key(secrets, outputs["PrivacyKeySecretArn"])
    return Target(
        dynamodb=dynamodb,
        s3=s3,
        table=outputs["TableName"],
        bucket=outputs["DataBucketName"],
        privacy_key=key,
        tombstone_days=int(outputs.get("TombstoneRetentionDays", 0)),
    )


def cmd_erase(args: argparse.Namespace) -> int:
    where = target(args)
    if not args.dry_run and args.settle:
        print(
            f"erasing; then waiting {args.settle:g} s for invocations already in flight ...", file=sys.stderr
        )
    receipt = where.erase(args.chat, dry_run=args.dry_run, settle_s=args.settle)
    print(json.dumps(receipt.as_dict(), indent=2) if args.json else receipt)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    document = target(args).export(args.chat)
    text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        counts = {k: len(document.get(k, [])) for k in ("messages", "scenarioRuns", "transcripts")}
        print(
            f"wrote {args.output}: chat {'found' if 'chat' in document else 'not found'}, {counts}",
            file=sys.stderr,
        )
    else:
        print(text)
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    for chat_id in target(args).find(args.user):
        print(chat_id)
    return 0
