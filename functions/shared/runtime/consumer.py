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
from shared.runtime.settings import ConsumerSettings
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


@cache
def settings() -> ConsumerSettings:
    return ConsumerSettings.from_env()


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
    )


def forget_clients() -> None:
    """Drop the cached settings and clients (tests and the local stack change the environment)."""
    for cached in (settings, store):
        cached.cache_clear()
