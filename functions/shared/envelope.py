"""The event on the bus: `detail = {"metadata": {...}, "webhook": {...}}` (contract: docs/events.md).

Metadata is normalised once, at ingest, so that every consumer and every rule reads the same ids
and instants without knowing where each topic keeps them, and so that rules still work when the
body travels by claim check (then `webhookRef` replaces `webhook`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.timestamps import ns_to_iso

if TYPE_CHECKING:  # the consumers read events, not webhooks: they need not import the topic models
    from shared.models import Webhook

# Bump on a breaking change to metadata (docs/events.md: versioning policy).
SCHEMA_VERSION = "1"


class RoutingFields(BaseModel):
    """What a trigger filters on, lifted out of the body so it survives a claim check."""

    model_config = ConfigDict(frozen=True)

    sender: str | None = None
    messageType: str | None = None
    chatStatus: str | None = None
    handledBy: str | None = None
    scenarioId: str | None = None
    rating: int | float | None = None


def routing_fields(
    *,
    sender: str | None = None,
    messageType: str | None = None,
    chatStatus: str | None = None,
    handledBy: str | None = None,
    scenarioId: str | None = None,
    rating: int | float | None = None,
) -> dict[str, Any]:
    """RoutingFields as the plain dict that goes into the metadata, every key present and in the
    model's order. Its values come from validated fields (shared.models' _str and _number), so
    building the model (and dumping it again) per webhook would only repeat checks; a test holds
    the two equal."""
    return {
        "sender": sender,
        "messageType": messageType,
        "chatStatus": chatStatus,
        "handledBy": handledBy,
        "scenarioId": scenarioId,
        "rating": rating,
    }


class Metadata(RoutingFields):
    """Everything a rule or consumer needs, whatever the topic. Every key is always present
    (the routing fields, inherited, come first in the JSON)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schemaVersion: str = SCHEMA_VERSION
    deliveryId: str
    topic: str
    botId: str
    chatId: str | None
    messageId: str | None
    requestId: str | None
    receivedAt: str
    sentAt: str | None
    occurredAt: str | None
    # Exact instant as a string of digits: nanoseconds overflow the 53-bit integers of JSON readers.
    occurredAtNs: Annotated[str | None, Field(pattern=r"^\d+$")]
    bodySize: int
    bodySha256: str


class WebhookRef(BaseModel):
    """Where a claim-checked body lives: s3://bucket/key, with its size and sha256 to verify it."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    size: int
    sha256: str


class BusDetail(BaseModel):
    """`detail` of every event we put on the bus. Exactly one of webhook and webhookRef is set."""

    model_config = ConfigDict(frozen=True)

    metadata: Metadata
    webhook: dict[str, Any] | None = None
    webhookRef: WebhookRef | None = None

    @model_validator(mode="after")
    def _one_body(self) -> BusDetail:
        if (self.webhook is None) == (self.webhookRef is None):
            raise ValueError("exactly one of webhook and webhookRef must be set")
        return self


def build_metadata(webhook: Webhook, raw: bytes, *, received_ns: int, delivery_id: str) -> dict[str, Any]:
    """Normalise what the consumers and rules need from a validated webhook and its raw bytes.

    Returns the metadata as it goes on the bus: the dict `Metadata` dumps to, keys in its order.
    Every value comes from the validated webhook, the clock or the bytes, so validating a Metadata
    per webhook would only repeat checks already made; tests hold this dict equal to Metadata's
    reading of it, for every topic.
    """
    occurred_ns = webhook.occurred_at_ns
    sent_ns = webhook.sent_at_ns
    return {
        **webhook.routing(),
        "schemaVersion": SCHEMA_VERSION,
        "deliveryId": delivery_id,
        "topic": webhook.topic,
        "botId": webhook.botId,
        "chatId": webhook.chat_id,
        "messageId": webhook.message_id,
        "requestId": webhook.request_id,
        "receivedAt": ns_to_iso(received_ns),
        "sentAt": None if sent_ns is None else ns_to_iso(sent_ns),
        "occurredAt": None if occurred_ns is None else ns_to_iso(occurred_ns),
        "occurredAtNs": None if occurred_ns is None else str(occurred_ns),
        "bodySize": len(raw),
        "bodySha256": hashlib.sha256(raw).hexdigest(),
    }
