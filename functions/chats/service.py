"""chat.create, chat.update, chat.status.change, chat.user.update, chat.data.update -> the chat item."""

from __future__ import annotations

from shared.contract.envelope import BusDetail
from shared.contract.models import parse_webhook
from shared.runtime.consumer import dropped_as_erased
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.storage.chat_state import update_from_webhook
from shared.storage.privacy import user_ids
from shared.storage.store import Store


def apply_chat_event(detail: BusDetail, store: Store) -> bool:
    """Merge the webhook into its chat's state. True if the item changed."""
    metadata = detail.metadata  # the ids and the instant, as ingest normalised them for every consumer
    if dropped_as_erased(detail, store):
        return False
    document = store.webhook(detail)  # read once (from the bucket when it was claim-checked)
    update = update_from_webhook(parse_webhook(document), metadata)
    if update is None or metadata.chatId is None:
        logger.warning("not a chat-state webhook", topic=metadata.topic, delivery_id=metadata.deliveryId)
        return False
    result = store.apply_chat_update(
        bot_id=metadata.botId,
        chat_id=metadata.chatId,
        update=update,
        user_ids=frozenset(user_ids(metadata.topic, document)),
    )
    if not result.written:  # older or repeated: delivery order and duplicates, not volume
        metrics.add_metric(name="ChatUpdatesSuperseded", unit=MetricUnit.Count, value=1)
    logger.info("chat event stored", topic=metadata.topic, chat_id=metadata.chatId, changed=result.written)
    return result.written
