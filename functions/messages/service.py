"""chat.<sender>.message and chat.message -> one item per message, whichever arrives first."""

from __future__ import annotations

from shared.contract.envelope import BusDetail
from shared.contract.models import MessageWebhook
from shared.runtime.consumer import dropped_as_erased, webhook_of
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.storage.store import Store


def store_message(detail: BusDetail, store: Store) -> bool:
    """Store the message once. True if this delivery wrote it, False for a duplicate."""
    metadata = detail.metadata
    if dropped_as_erased(detail, store):
        return False
    webhook = webhook_of(detail, store)
    if not isinstance(webhook, MessageWebhook):
        logger.warning("not a message topic", topic=metadata.topic, delivery_id=metadata.deliveryId)
        return False
    data = webhook.data
    result = store.put_message(
        bot_id=webhook.botId,
        chat_id=data.chatId,
        key=data.key(data.chatId),
        has_id=data.id is not None,
        ns=webhook.occurred_at_ns or 0,
        message=data.model_dump(mode="json", exclude_unset=True),
        source=webhook.topic,
        own_precision=data.timestamp_precision,
    )
    if not result.written:  # a redelivery, or chat.message and chat.<sender>.message both subscribed
        metrics.add_metric(name="MessagesDuplicate", unit=MetricUnit.Count, value=1)
    logger.info("message stored", topic=metadata.topic, chat_id=data.chatId, duplicate=not result.written)
    return result.written
