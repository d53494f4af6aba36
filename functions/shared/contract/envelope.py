"""The event on the bus: `detail = {"metadata": {...}, "webhook": {...}}` (contract: docs/events.md).

Metadata is normalised once, at ingest, so that every consumer and every rule reads the same ids
and instants without knowing where each topic keeps them, and so that rules still work when the
body travels by claim check (then `webhookRef` replaces `webhook`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


ROUTING_KEYS = tuple(RoutingFields.model_fields)
_ROUTING_KEY_SET = frozenset(ROUTING_KEYS)


def routing_fields(**values: str | int | float | None) -> dict[str, Any]:
    """RoutingFields as the plain dict that goes into the metadata: every key of the model, in its
    order, None where not given. The values come from validated fields (shared.contract.models'
    _str and _number), so building the model and dumping it per webhook would only repeat checks."""
    if not values.keys() <= _ROUTING_KEY_SET:
        raise TypeError(f"not routing fields: {sorted(values.keys() - _ROUTING_KEY_SET)}")
    return {key: values.get(key) for key in ROUTING_KEYS}


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
    """`detail` of every event we put on the bus. Exactly one of webhook and webhookRef is set.
    Its errors never repeat the event's values (the chat's content)."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    metadata: Metadata
    webhook: dict[str, Any] | None = None
    webhookRef: WebhookRef | None = None

    @model_validator(mode="after")
    def _one_body(self) -> BusDetail:
        if (self.webhook is None) == (self.webhookRef is None):
            raise ValueError("exactly one of webhook and webhookRef must be set")
        return self


# The keys of the metadata, in the order the bus event carries them (build_metadata follows it).
METADATA_KEYS = tuple(Metadata.model_fields)
