"""chat.close -> the whole transcript in S3, missing messages filled in, the chat marked closed.

Each close is written once under its key (shared.storage.bucket.transcript_key), and a later close
of the chat on the same day replaces an earlier one, never the reverse (the bucket is versioned:
every close written is kept).
"""

from __future__ import annotations

from typing import Any

from shared.contract.envelope import BusDetail
from shared.contract.models import ChatClose
from shared.contract.timestamps import ns_to_iso
from shared.runtime.consumer import dropped_as_erased
from shared.runtime.observability import MetricUnit, in_threads, logger, metrics
from shared.storage.bucket import transcript_key
from shared.storage.chat_state import ChatUpdate, version_of
from shared.storage.store import Store

# Concurrent writes of the messages a transcript has and the table does not (boto3's clients are
# thread-safe; their connection pool holds 10).
FILL_WORKERS = 8


def store_transcript(detail: BusDetail, store: Store) -> dict[str, Any]:
    metadata = detail.metadata
    if dropped_as_erased(detail, store):
        return {"transcriptKey": None, "messagesFilledIn": 0, "objectWritten": False, "erased": True}
    body = store.webhook(detail)
    webhook = ChatClose.model_validate(body)
    chat_id = webhook.chat_id
    closed_ns = webhook.sent_at_ns or int(metadata.occurredAtNs or 0)
    key = transcript_key(webhook.botId, chat_id, closed_ns)
    version = version_of(metadata, closed_ns)
    store.record_object(chat_id, key)  # before the object: erase and export find it by the record
    written = store.bucket.put_transcript(key, body, version)

    # Completeness: every transcript message is stored under the messages consumer's key, once.
    # The missing ones are written FILL_WORKERS at a time: one after another, a long transcript none
    # of whose messages arrived (thousands of writes) would come near the function's timeout. Each
    # write is idempotent, so a retry after a failure resumes where this one stopped.
    # By key: a message is the same message whatever instant each delivery spelled.
    stored = store.message_keys(chat_id)
    missing: list[dict[str, Any]] = []
    for message in webhook.data.conversation:
        message_key = message.key(chat_id)
        if message_key in stored:
            continue
        ns = message.timestamp_ns if message.timestamp_ns is not None else closed_ns
        missing.append(
            {
                "bot_id": webhook.botId,
                "chat_id": chat_id,
                "key": message_key,
                "has_id": message.id is not None,
                "ns": ns,
                "message": message.model_dump(mode="json", exclude_unset=True),
                "source": None,  # the transcript is not a message delivery
                "own_precision": message.timestamp_precision,
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
