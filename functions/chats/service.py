"""chat.create, chat.update, chat.status.change, chat.user.update, chat.data.update -> the chat item."""

from __future__ import annotations

from shared.contract.envelope import BusDetail
from shared.runtime.consumer import webhook_of
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.storage.chat_state import update_from_webhook
from shared.storage.store import Store


def apply_chat_event(detail: BusDetail, store: Store) -> bool:
    """Merge the webhook into its chat's state. True if the item changed."""
    metadata = detail.metadata  # the ids and the instant, as ingest normalised them for every consumer
    update = update_from_webhook(webhook_of(detail, store), metadata)
    if update is None or metadata.chatId is None:
        logger.warning("not a chat-state webhook", topic=metadata.topic, delivery_id=metadata.deliveryId)
        return False
    result = store.apply_chat_update(bot_id=metadata.botId, chat_id=metadata.chatId, update=update)
    if not result.written:  # older or repeated: delivery order and duplicates, not volume
        metrics.add_metric(name="ChatUpdatesSuperseded", unit=MetricUnit.Count, value=1)
    logger.info("chat event stored", topic=metadata.topic, chat_id=metadata.chatId, changed=result.written)
    return result.written
