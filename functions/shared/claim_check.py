"""Claim check: bodies too big for the bus live in S3 and the event carries a reference.

Every consumer reads the webhook through `resolve_webhook`, whether it travelled inline or not,
and the bytes are checked against the size and sha256 recorded at ingest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.envelope import BusDetail, WebhookRef
from shared.timestamps import ns_to_date

CLAIM_CHECK_PREFIX = "claim-check/"
SPILL_PREFIX = "spill/"
QUARANTINE_PREFIX = "quarantine/"
TRANSCRIPTS_PREFIX = "transcripts/"


class ClaimCheckMismatchError(Exception):
    """The object behind a reference is not the body that was checked in (size or sha256 differ)."""


def object_key(prefix: str, received_ns: int, delivery_id: str, suffix: str = ".json") -> str:
    """`<prefix>dt=<received date>/<delivery id><suffix>`: one object per delivery, listable by day."""
    return f"{prefix}dt={ns_to_date(received_ns)}/{delivery_id}{suffix}"


def check_in(s3: Any, bucket: str, key: str, raw: bytes) -> WebhookRef:
    """Store the body exactly as received and return the reference the event will carry."""
    digest = hashlib.sha256(raw).hexdigest()
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=raw,
        ContentType="application/json",
        ChecksumAlgorithm="SHA256",
    )
    return WebhookRef(bucket=bucket, key=key, size=len(raw), sha256=digest)


def fetch_body(s3: Any, ref: WebhookRef) -> bytes:
    """The exact bytes behind a reference, verified."""
    raw: bytes = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    if len(raw) != ref.size or hashlib.sha256(raw).hexdigest() != ref.sha256:
        raise ClaimCheckMismatchError(f"s3://{ref.bucket}/{ref.key} does not match its reference")
    return raw


def resolve_webhook(detail: BusDetail, s3: Any) -> dict[str, Any]:
    """The webhook body of an event, fetched from S3 when it was claim-checked."""
    if detail.webhook is not None:
        return detail.webhook
    assert detail.webhookRef is not None  # guaranteed by BusDetail's validator
    body: dict[str, Any] = json.loads(fetch_body(s3, detail.webhookRef).decode("utf-8-sig"))
    return body
