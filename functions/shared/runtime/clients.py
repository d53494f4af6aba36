"""A boto3 client made on first use, for clients that only rare paths need."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


class LazyClient:
    """Stands in for `boto3.client(service_name, config=config)` and makes it on first use.

    S3 is touched by ingest only for claim checks, spills and quarantine, and by the chat-state,
    message and scenario consumers only for claim-checked bodies and oversize parts; so their
    common cold start does not pay for S3's client (its service model is the largest they load).
    Not locked: a Lambda environment runs one invocation at a time, and two clients made by a
    race would both work.
    """

    def __init__(self, service_name: str, config: Config) -> None:
        self._args = (service_name, config)
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            service_name, config = self._args
            self._client = boto3.client(service_name, config=config)
        return getattr(self._client, name)
