"""Settings read from the environment once, at cold start, and validated.

Resource names have no defaults: a function deployed without its table or bucket fails at once
with the variable's name, instead of writing somewhere unexpected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _csv(value: object) -> object:
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


class _FromEnv(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class IngestSettings(_FromEnv):
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    bucket_name: str = Field(alias="BUCKET_NAME", min_length=1)
    token_secret_id: str = Field(alias="TOKEN_SECRET_ID", min_length=1)
    event_source: str = Field(alias="EVENT_SOURCE", default="ebbot.webhooks", min_length=1, max_length=256)
    # Lambda's synchronous payload limit is 6 MB for the whole event, base64 included (template.yaml's
    # MaxBodyBytes has the same bound).
    max_body_bytes: int = Field(alias="MAX_BODY_BYTES", default=4 * 1024 * 1024, gt=0, le=4_706_304)
    # EventBridge takes entries up to 1 MB and bills per 64 KB; above this the body goes to S3. At
    # most what both dead-letter queues can still hold (template.yaml's ClaimCheckThresholdBytes).
    claim_check_threshold_bytes: int = Field(
        alias="CLAIM_CHECK_THRESHOLD_BYTES", default=256 * 1024, gt=0, le=983_040
    )
    # Payload fields to drop or hash before anything is kept (ingest.fields); empty keeps everything.
    payload_field_policy: str = Field(alias="PAYLOAD_FIELD_POLICY", default="")
    # The privacy key's secret, read only when the policy hashes a field.
    privacy_key_secret_id: str | None = Field(alias="PRIVACY_KEY_SECRET_ID", default=None, min_length=1)
    # Empty: every bot is accepted.
    allowed_bot_ids: Annotated[frozenset[str], BeforeValidator(_csv)] = Field(
        alias="ALLOWED_BOT_IDS", default=frozenset()
    )


class ConsumerSettings(_FromEnv):
    table_name: str = Field(alias="TABLE_NAME", min_length=1)
    bucket_name: str = Field(alias="BUCKET_NAME", min_length=1)
    # The privacy key's secret (tombstones, the user index: shared.storage.privacy). The template
    # sets it for every consumer; without it neither is read nor written.
    privacy_key_secret_id: str | None = Field(alias="PRIVACY_KEY_SECRET_ID", default=None, min_length=1)
    # Days an item is kept after its last write; 0 keeps items forever.
    item_retention_days: int = Field(alias="ITEM_RETENTION_DAYS", default=0, ge=0)
