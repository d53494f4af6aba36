"""Parse every sample webhook and print the event the ingest function would put on the bus."""

from __future__ import annotations

import json
import sys
import time
import uuid

from shared.envelope import BusDetail, build_metadata
from shared.errors import WebhookInvalidError
from shared.models import parse_webhook
from tools.events import WEBHOOKS

DEFAULT_SOURCE = "ebbot.webhooks"


def main() -> int:
    failures = 0
    for path in sorted(WEBHOOKS.glob("*.json")):
        raw = path.read_bytes()
        try:
            webhook = parse_webhook(json.loads(raw))
        except WebhookInvalidError as exc:
            failures += 1
            print(f"{path.name}: rejected: {exc}", file=sys.stderr)
            continue
        metadata = build_metadata(webhook, raw, received_ns=time.time_ns(), delivery_id=str(uuid.uuid4()))
        detail = BusDetail(metadata=metadata, webhook=json.loads(raw))
        entry = {
            "Source": DEFAULT_SOURCE,
            "DetailType": webhook.topic,
            "metadata": detail.metadata.model_dump(),
        }
        print(json.dumps(entry, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
