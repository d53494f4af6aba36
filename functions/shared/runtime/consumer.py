"""What every consumer shares: the typed EventBridge event, the webhook it carries as its topic's
model, and the store (the table, and through it the bucket), built once per sandbox."""

from __future__ import annotations

from functools import cache

import boto3
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from botocore.config import Config
from pydantic import ConfigDict

from shared.contract.envelope import BusDetail
from shared.contract.models import Webhook, parse_webhook
from shared.runtime.clients import LazyClient
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.runtime.settings import ConsumerSettings
from shared.storage.privacy import load_privacy_key
from shared.storage.store import Store

# Correlate every log line of one webhook across functions by its delivery id.
CORRELATION_PATH = "detail.metadata.deliveryId"
_AWS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 5})


class WebhookEvent(EventBridgeModel):
    """An event from our bus as EventBridge delivers it to a Lambda target. A refusal names fields,
    never their values: Lambda logs the error of a failed invocation."""

    model_config = ConfigDict(hide_input_in_errors=True)

    detail: BusDetail


def webhook_of(detail: BusDetail, store: Store) -> Webhook:
    """The event's webhook as its topic's model: read once (from the bucket when it was
    claim-checked) and parsed once, for the consumer to dispatch on."""
    return parse_webhook(store.webhook(detail))


def dropped_as_erased(detail: BusDetail, store: Store) -> bool:
    """True, counted and logged (by delivery id only), when the event's chat was erased: the
    consumer stores nothing for it, whether it is a late webhook, a redrive or a replay."""
    chat_id = detail.metadata.chatId
    if chat_id is None or not store.is_erased(chat_id):
        return False
    metrics.add_metric(name="ErasedChatEventsDropped", unit=MetricUnit.Count, value=1)
    logger.info("event of an erased chat dropped", delivery_id=detail.metadata.deliveryId)
    return True


@cache
def settings() -> ConsumerSettings:
    return ConsumerSettings.from_env()


@cache
def privacy_key() -> bytes:
    """The privacy key, read from its secret once per sandbox, on the first event that needs it.
    An error here fails the invocation, which Lambda retries: nothing is stored unchecked."""
    secret_id = settings().privacy_key_secret_id
    assert secret_id is not None  # store() passes this function only when it is set
    return load_privacy_key(boto3.client("secretsmanager", config=_AWS_CONFIG), secret_id)


@cache
def store() -> Store:
    """Built on the first invocation, not at import, so tests and moto can stand in. Its S3
    client is made on first use (claim-checked bodies, oversize parts, transcripts): LazyClient."""
    return Store(
        boto3.client("dynamodb", config=_AWS_CONFIG),
        LazyClient("s3", _AWS_CONFIG),
        table=settings().table_name,
        bucket=settings().bucket_name,
        retention_days=settings().item_retention_days,
        privacy_key=privacy_key if settings().privacy_key_secret_id else None,
    )


def forget_clients() -> None:
    """Drop the cached settings and clients (tests and the local stack change the environment)."""
    for cached in (settings, store, privacy_key):
        cached.cache_clear()
