"""chat.create, chat.update, chat.status.change, chat.user.update, chat.data.update -> the chat item."""

from __future__ import annotations

from typing import Any

from shared.chat_state import update_from_webhook
from shared.claim_check import resolve_webhook
from shared.envelope import BusDetail
from shared.observability import MetricUnit, logger, metrics
from shared.store import Store


def apply_chat_event(detail: BusDetail, store: Store, s3: Any) -> bool:
    """Merge the webhook into its chat's state. True if the item changed."""
    metadata = detail.metadata
    if metadata.chatId is None:
        logger.warning(
            "chat event without a chat id ignored", topic=metadata.topic, delivery_id=metadata.deliveryId
        )
        return False
    update = update_from_webhook(metadata.topic, resolve_webhook(detail, s3), metadata)
    result = store.apply_chat_update(bot_id=metadata.botId, chat_id=metadata.chatId, update=update)
    if not result.written:  # older or repeated: delivery order and duplicates, not volume
        metrics.add_metric(name="ChatUpdatesSuperseded", unit=MetricUnit.Count, value=1)
    logger.info("chat event stored", topic=metadata.topic, chat_id=metadata.chatId, changed=result.written)
    return result.written
