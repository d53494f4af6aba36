"""Claim check: bodies too big for the bus live in S3 and the event carries a reference.

Every consumer reads the webhook through `resolve_webhook`, whether it travelled inline or not,
and the bytes are checked against the size and sha256 recorded at ingest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from shared.contract.envelope import BusDetail, WebhookRef
from shared.storage.bucket import CONTENT_TYPE, S3_NOT_FOUND


class ClaimCheckMismatchError(Exception):
    """The object behind a reference is not the body that was checked in (size or sha256 differ)."""


def check_in(s3: Any, bucket: str, key: str, raw: bytes) -> WebhookRef:
    """Store the body exactly as received and return the reference the event will carry."""
    digest = hashlib.sha256(raw).hexdigest()
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=raw,
        ContentType=CONTENT_TYPE,
        ChecksumAlgorithm="SHA256",
    )
    return WebhookRef(bucket=bucket, key=key, size=len(raw), sha256=digest)


def _matches(raw: bytes, size: int, sha256: str) -> bool:
    return len(raw) == size and hashlib.sha256(raw).hexdigest() == sha256


def fetch_body(s3: Any, ref: WebhookRef) -> bytes:
    """The exact bytes behind a reference, verified."""
    raw: bytes = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    if not _matches(raw, ref.size, ref.sha256):
        raise ClaimCheckMismatchError(f"s3://{ref.bucket}/{ref.key} does not match its reference")
    return raw


class ClaimCheckGoneError(LookupError):
    """The body behind a reference no longer exists (its lifecycle expired it)."""


def renew(s3: Any, detail: Any) -> bool:
    """Restart the expiry clock of a claim-checked body before its event is delivered again.

    The bucket's lifecycle expires claim checks 16 days (or the archive's retention) after they are
    written, which covers one wait in a dead-letter queue; an event redriven and failed again waits
    once more, so a redrive rewrites the object in place (same bytes, type and metadata: S3 counts
    an object's age from its last write). `detail` is the event's detail as a dict; False when the
    event carries its body inline. Raises ClaimCheckGoneError when the body has already expired.
    """
    ref = detail.get("webhookRef") if isinstance(detail, dict) else None
    if not isinstance(ref, dict):
        return False
    bucket, key = ref["bucket"], ref["key"]
    try:
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            # S3 refuses a copy onto itself that changes nothing; check_in set this type, no metadata.
            MetadataDirective="REPLACE",
            ContentType=CONTENT_TYPE,
            ChecksumAlgorithm="SHA256",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in S3_NOT_FOUND:
            raise ClaimCheckGoneError(f"s3://{bucket}/{key} has expired") from None
        raise
    return True


def check_in_again(s3: Any, ref: dict[str, Any], raw: bytes) -> bool:
    """Put an expired claim-checked body back from a copy (a spill object's); False, and nothing
    written, if the copy is not the body the reference names."""
    if not _matches(raw, ref["size"], ref["sha256"]):
        return False
    check_in(s3, ref["bucket"], ref["key"], raw)
    return True


def resolve_webhook(detail: BusDetail, s3: Any) -> dict[str, Any]:
    """The webhook body of an event, fetched from S3 when it was claim-checked."""
    if detail.webhook is not None:
        return detail.webhook
    assert detail.webhookRef is not None  # guaranteed by BusDetail's validator
    body: dict[str, Any] = json.loads(fetch_body(s3, detail.webhookRef).decode("utf-8-sig"))
    return body
