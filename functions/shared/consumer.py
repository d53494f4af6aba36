"""What every consumer shares: the typed EventBridge event and the store, built once per sandbox."""

from __future__ import annotations

from functools import cache

import boto3
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from botocore.config import Config

from shared.envelope import BusDetail
from shared.lazy_client import LazyClient
from shared.settings import ConsumerSettings
from shared.store import Store

# Correlate every log line of one webhook across functions by its delivery id.
CORRELATION_PATH = "detail.metadata.deliveryId"
_AWS_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 5})


class WebhookEvent(EventBridgeModel):
    """An event from our bus as EventBridge delivers it to a Lambda target."""

    detail: BusDetail


@cache
def settings() -> ConsumerSettings:
    return ConsumerSettings.from_env()


@cache
def store() -> Store:
    """Built on the first invocation, not at import, so tests and moto can stand in."""
    return Store(
        boto3.client("dynamodb", config=_AWS_CONFIG),
        s3_client(),
        table=settings().table_name,
        bucket=settings().bucket_name,
        retention_days=settings().item_retention_days,
    )


@cache
def s3_client() -> object:
    """Made on first use (claim-checked bodies, oversize parts, transcripts): see LazyClient."""
    return LazyClient("s3", _AWS_CONFIG)


def forget_clients() -> None:
    """Drop the cached settings and clients (tests and the local stack change the environment)."""
    for cached in (settings, store, s3_client):
        cached.cache_clear()
