"""chat.<sender>.message and chat.message -> one item per message, whichever arrives first."""

from __future__ import annotations

from typing import Any

from shared.claim_check import resolve_webhook
from shared.envelope import BusDetail
from shared.models import MESSAGE_TOPICS, TOPIC_MODELS, MessageData
from shared.observability import MetricUnit, logger, metrics
from shared.store import Store


def store_message(detail: BusDetail, store: Store, s3: Any) -> bool:
    """Store the message once. True if this delivery wrote it, False for a duplicate."""
    metadata = detail.metadata
    if metadata.topic not in MESSAGE_TOPICS:
        logger.warning("not a message topic", topic=metadata.topic, delivery_id=metadata.deliveryId)
        return False
    webhook = TOPIC_MODELS[metadata.topic].model_validate(resolve_webhook(detail, s3))
    data: MessageData = webhook.data  # type: ignore[attr-defined]
    result = store.put_message(
        bot_id=webhook.botId,
        chat_id=data.chatId,
        key=data.key(data.chatId),
        has_id=data.id is not None,
        ns=webhook.occurred_at_ns or 0,
        message=data.model_dump(mode="json", exclude_unset=True),
        source=metadata.topic,
    )
    if not result.written:  # a redelivery, or chat.message and chat.<sender>.message both subscribed
        metrics.add_metric(name="MessagesDuplicate", unit=MetricUnit.Count, value=1)
    logger.info("message stored", topic=metadata.topic, chat_id=data.chatId, duplicate=not result.written)
    return result.written
