"""chat.close -> the whole transcript in S3, missing messages filled in, the chat marked closed.

The object key is partitioned Hive-style by bot and by the date of the close (Ebbot's timestamp,
not the receive time), so a replay or redelivery writes the same object. Each close is written once,
and a later close of the chat on the same day replaces an earlier one, never the reverse (the bucket
is versioned: every close written is kept).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from shared.chat_state import ChatUpdate, version_of
from shared.claim_check import S3_NOT_FOUND, TRANSCRIPTS_PREFIX, resolve_webhook
from shared.envelope import BusDetail
from shared.models import ChatClose
from shared.observability import MetricUnit, in_threads, logger, metrics
from shared.store import Store, message_sk
from shared.timestamps import ns_to_date, ns_to_iso

# Concurrent writes of the messages a transcript has and the table does not (boto3's clients are
# thread-safe; their connection pool holds 10).
FILL_WORKERS = 8
# A conditional PUT that lost to another writer: S3's 412, or its 409 while another conditional
# write of the key is in flight.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
# Attempts at replacing an object that keeps changing under us before the invocation fails (and
# Lambda retries it).
MAX_TRANSCRIPT_ATTEMPTS = 4


class TranscriptWriteConflictError(Exception):
    """The transcript's key kept changing between our read and our conditional write."""


def transcript_key(bot_id: str, chat_id: str, closed_ns: int) -> str:
    """`transcripts/bot=<botId>/dt=<YYYY-MM-DD>/<chatId>.json`, ids percent-encoded where unsafe."""
    bot, chat = quote(bot_id, safe="-_.~"), quote(chat_id, safe="-_.~")
    return f"{TRANSCRIPTS_PREFIX}bot={bot}/dt={ns_to_date(closed_ns)}/{chat}.json"


def store_transcript(detail: BusDetail, store: Store, s3: Any, bucket: str) -> dict[str, Any]:
    metadata = detail.metadata
    body = resolve_webhook(detail, s3)
    webhook = ChatClose.model_validate(body)
    chat_id = webhook.chat_id
    closed_ns = webhook.sent_at_ns or int(metadata.occurredAtNs or 0)
    key = transcript_key(webhook.botId, chat_id, closed_ns)
    version = version_of(metadata, closed_ns)
    written = _put_transcript(s3, bucket, key, body, version)

    # Completeness: every transcript message is stored under the messages consumer's key, once.
    # The missing ones are written FILL_WORKERS at a time: one after another, a long transcript none
    # of whose messages arrived (thousands of writes) would come near the function's timeout. Each
    # write is idempotent, so a retry after a failure resumes where this one stopped.
    stored = store.message_keys(chat_id)
    missing: list[dict[str, Any]] = []
    for message in webhook.data.conversation:
        message_key = message.key(chat_id)
        ns = message.timestamp_ns if message.timestamp_ns is not None else closed_ns
        if message_sk(ns, message_key) in stored:
            continue
        missing.append(
            {
                "bot_id": webhook.botId,
                "chat_id": chat_id,
                "key": message_key,
                "has_id": message.id is not None,
                "ns": ns,
                "message": message.model_dump(mode="json", exclude_unset=True),
                "source": None,  # the transcript is not a message delivery
            }
        )
    results = in_threads(lambda fields: store.put_message(**fields), missing, FILL_WORKERS)
    filled = sum(int(result.written) for result in results)

    status = (
        webhook.data.status if isinstance(webhook.data.status, str) and webhook.data.status else "chat_closed"
    )
    update = ChatUpdate(
        version=version,
        fields={
            "status": {"status": status},
            "close": {
                "closedAt": ns_to_iso(closed_ns),
                "transcriptKey": key,
                "messageCount": len(webhook.data.conversation),
            },
        },
    )
    store.apply_chat_update(bot_id=webhook.botId, chat_id=chat_id, update=update)
    if filled:
        metrics.add_metric(name="MessagesMissingBeforeClose", unit=MetricUnit.Count, value=filled)
    logger.info(
        "transcript stored",
        chat_id=chat_id,
        messages=len(webhook.data.conversation),
        filled_in=filled,
        object_written=written,
    )
    return {"transcriptKey": key, "messagesFilledIn": filled, "objectWritten": written}


def _put_transcript(s3: Any, bucket: str, key: str, body: dict[str, Any], version: str) -> bool:
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
        "Bucket": bucket,
        "Key": key,
        "Body": document,
        "ContentType": "application/json",
        "ChecksumAlgorithm": "SHA256",
        "Metadata": {"sha256": digest, "version": version},
    }
    condition: dict[str, str] = {"IfNoneMatch": "*"}
    for _ in range(MAX_TRANSCRIPT_ATTEMPTS):
        try:
            s3.put_object(**put, **condition)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in _CONDITION_FAILED:
                raise
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            # Gone again (deleted after our refused create): create it. On AWS this role, which
            # may not list the bucket, is answered 403 rather than 404 and raises instead; Lambda's
            # retry then creates it. That is also why a new key is not looked up before it is
            # written: every first close would be a 403.
            if exc.response["Error"]["Code"] not in S3_NOT_FOUND:
                raise
            condition = {"IfNoneMatch": "*"}
            continue
        stored = head.get("Metadata", {})
        # An object from before versions were recorded has none: any other close replaces it.
        if stored.get("sha256") == digest or stored.get("version", "") >= version:
            return False
        condition = {"IfMatch": head["ETag"]}
    raise TranscriptWriteConflictError(f"transcript kept changing after {MAX_TRANSCRIPT_ATTEMPTS} attempts")
