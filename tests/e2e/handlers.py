"""Handlers that the end-to-end tests add to a copy of template.yaml (never deployed)."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A trigger added by a user: leaves a marker object for each event it receives."""
    metadata = event["detail"]["metadata"]
    key = f"e2e-trigger/{metadata['deliveryId']}.json"
    boto3.client("s3").put_object(
        Bucket=os.environ["BUCKET_NAME"], Key=key, Body=json.dumps(metadata).encode()
    )
    return {"key": key}


class DeliberateFailureError(RuntimeError):
    pass


def fail(event: dict[str, Any], context: Any) -> None:
    """A consumer with a bug: raises on every event."""
    raise DeliberateFailureError("this consumer always fails")
