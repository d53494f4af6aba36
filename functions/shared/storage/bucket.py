"""The data bucket: its layout (one prefix per kind of object, each with its own lifecycle in
template.yaml) and the reads and writes the consumers make in it (docs/data-model.md).

- transcripts/  `bot=<botId>/dt=<close date>/<chatId>.json`: every close (transcripts function)
- claim-check/  `chat=<chatId>/dt=<received date>/<deliveryId>.json`: bodies too big for the bus (ingest)
- spill/        `chat=<chatId>/dt=<received date>/<deliveryId>.json`: events the bus did not take
- quarantine/   `chat=<chatId>/dt=<received date>/<deliveryId>.bin`: authenticated bodies that failed
                validation (`nochat/` instead of `chat=…/` when the body names no chat)
Each is under its chat, so that erasing or exporting a chat lists its own prefix, never the bucket.
- oversize/     `<hash of the item's key>/<attribute>-<hash>.json`: item parts over the inline limit
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from shared.contract.timestamps import ns_to_date

TRANSCRIPTS_PREFIX = "transcripts/"
CLAIM_CHECK_PREFIX = "claim-check/"
SPILL_PREFIX = "spill/"
QUARANTINE_PREFIX = "quarantine/"
OVERSIZE_PREFIX = "oversize/"
CONTENT_TYPE = "application/json"
# The field of a spill object that carries a claim-checked body (base64), for redrive to put back.
SPILLED_BODY_FIELD = "claimCheckedBody"
# The field of a spill object that names the bus's refusal, when the bus refused the event for good.
REFUSED_FIELD = "refusedBy"
# The error codes S3 gives for a missing key (HEAD has no body, so only its status: "404"). A role
# without s3:ListBucket on the bucket gets 403 instead.
S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# A conditional PUT that lost to another writer: S3's 412, or its 409 while another conditional
# write of the key is in flight.
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# Attempts at replacing a transcript that keeps changing under us before the invocation fails (and
# Lambda retries it).
MAX_TRANSCRIPT_ATTEMPTS = 4


def object_key(
    prefix: str, received_ns: int, delivery_id: str, chat_id: str | None, suffix: str = ".json"
) -> str:
    """`<prefix>chat=<chat id>/dt=<received date>/<delivery id><suffix>`: one object per delivery,
    listable by chat (chat_prefix), then by day."""
    return f"{chat_prefix(prefix, chat_id)}dt={ns_to_date(received_ns)}/{delivery_id}{suffix}"


def chat_prefix(prefix: str, chat_id: str | None) -> str:
    """Where a chat's objects of one kind are: `<prefix>chat=<chat id as a key part>/`, or
    `<prefix>nochat/` for a body that names no chat."""
    return f"{prefix}chat={key_part(chat_id)}/" if chat_id else f"{prefix}nochat/"


# An id's part of an S3 key at most, percent-encoded: two of them and the rest of a transcript's key
# stay far inside S3's 1,024-byte limit.
MAX_KEY_PART_CHARS = 256


def key_part(value: str) -> str:
    """An id as a part of an S3 key: percent-encoded where unsafe, or, when that is longer than
    MAX_KEY_PART_CHARS (ids of many non-ASCII characters), `~` and 32 hex digits of its sha256."""
    quoted = quote(value, safe="-_.~")
    if len(quoted) <= MAX_KEY_PART_CHARS:
        return quoted
    return "~" + hashlib.sha256(value.encode()).hexdigest()[:32]


def transcript_key(bot_id: str, chat_id: str, closed_ns: int) -> str:
    """`transcripts/bot=<botId>/dt=<YYYY-MM-DD>/<chatId>.json`, each id as a key part.

    Partitioned Hive-style by bot and by the date of the close (Ebbot's timestamp, not the receive
    time), so a replay or redelivery writes the same object."""
    bot, chat = key_part(bot_id), key_part(chat_id)
    return f"{TRANSCRIPTS_PREFIX}bot={bot}/dt={ns_to_date(closed_ns)}/{chat}.json"


def oversize_key(owner: str, name: str, encoded: bytes) -> str:
    """Where a part too large for its item goes: by its item's key and its own content."""
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:32]
    return f"{OVERSIZE_PREFIX}{owner_hash}/{name}-{hashlib.sha256(encoded).hexdigest()[:16]}.json"


class TranscriptWriteConflictError(Exception):
    """The transcript's key kept changing between our read and our conditional write."""


class Bucket:
    """The consumers' S3: one client, made on first use by the caller's choice (LazyClient)."""

    def __init__(self, s3: Any, name: str) -> None:
        self.s3 = s3
        self.name = name

    def put_part(self, key: str, encoded: bytes) -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=encoded, ContentType=CONTENT_TYPE)

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def put_transcript(self, key: str, body: dict[str, Any], version: str) -> bool:
        """Write the transcript unless the key already holds this close or a later one. True if written.

        The common case, a key not written before, is one conditional PUT (If-None-Match), with no
        HEAD before it. A key already there (a redelivery, or a chat closed again the same day) is
        compared by version, the close's instant then its body's hash, as the chat item's registers
        are: the later close wins in any delivery order, and the same close is not written twice
        (the bucket keeps every version). The overwrite is conditional on the ETag just read, so two
        closes racing for the key cannot both win."""
        document = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        digest = hashlib.sha256(document).hexdigest()
        put = {
            "Bucket": self.name,
            "Key": key,
            "Body": document,
            "ContentType": CONTENT_TYPE,
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {"sha256": digest, "version": version},
        }
        condition: dict[str, str] = {"IfNoneMatch": "*"}
        for _ in range(MAX_TRANSCRIPT_ATTEMPTS):
            try:
                self.s3.put_object(**put, **condition)
                return True
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in CONDITION_FAILED:
                    raise
            try:
                head = self.s3.head_object(Bucket=self.name, Key=key)
            except ClientError as exc:
                # Gone again (deleted after our refused create): create it. On AWS this role, which
                # may not list the bucket, is answered 403 rather than 404 and raises instead;
                # Lambda's retry then creates it. That is also why a new key is not looked up before
                # it is written: every first close would be a 403.
                if exc.response["Error"]["Code"] not in S3_NOT_FOUND:
                    raise
                condition = {"IfNoneMatch": "*"}
                continue
            stored = head.get("Metadata", {})
            # An object from before versions were recorded has none: any other close replaces it.
            if stored.get("sha256") == digest or stored.get("version", "") >= version:
                return False
            condition = {"IfMatch": head["ETag"]}
        raise TranscriptWriteConflictError(
            f"transcript kept changing after {MAX_TRANSCRIPT_ATTEMPTS} attempts"
        )
