"""Load through the local stack over HTTP: generated conversations, shuffled and partly duplicated,
at a concurrency of 32, end in exactly the expected chats, messages and transcripts, with no 5xx.

Bounded and loopback-only. The size fits CI (LOAD_CHATS, default 80 chats, about a thousand webhooks);
`make load` runs several thousand against `make run`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tools.load import plan, post_all, wait_until_exact


def test_generated_conversations_under_load_end_exactly_as_expected(
    plain_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = plain_stack["outputs"]
    monkeypatch.setenv("EBBOT_LOCAL_DIR", plain_stack["env"]["EBBOT_LOCAL_DIR"])  # where routes.json is
    work = plan(int(os.environ.get("LOAD_CHATS", "80")))
    assert len(work.webhooks) > 800
    result = post_all(outputs["WebhookUrl"], work.webhooks, concurrency=32, timeout_s=300)
    assert result.sent == len(work.webhooks)
    assert result.statuses == {202: len(work.webhooks)}  # duplicates are accepted too; no 5xx
    problems, _ = wait_until_exact(work, outputs, timeout_s=300)
    assert problems == []
