"""The field policy (ingest.fields): what an operator may write, and what it does to a body."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ingest.fields import FieldPolicyError, apply_policy, parse_policy
from tools.template import load_template

ALLOWED = load_template()["Parameters"]["PayloadFieldPolicy"]["AllowedPattern"]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "drop:chat.data.update:data.clientIp",
        "drop:chat.data.update:data.clientIp,hash:*:context.user_id",
        "drop:chat.close:data.conversation.*.user_ip",
    ],
)
def test_a_valid_policy_is_accepted_by_the_template_and_by_ingest(spec: str) -> None:
    assert re.fullmatch(ALLOWED, spec)
    parse_policy(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "remove:chat.update:data.x",
        "drop:chat:data.x",
        "drop:chat.update:",
        "drop:chat.update:a b",
        "drop:*:x,",
    ],
)
def test_a_malformed_policy_is_refused_by_the_template_before_deploy(spec: str) -> None:
    assert not re.fullmatch(ALLOWED, spec)
    with pytest.raises(FieldPolicyError):
        parse_policy(spec)


@pytest.mark.parametrize(
    "path", ["topic", "botId", "timestamp", "data.chatId", "chat.id", "data.id", "data.*"]
)
def test_what_the_pipeline_reads_cannot_be_dropped(path: str) -> None:
    with pytest.raises(FieldPolicyError):
        parse_policy(f"drop:*:{path}")


def test_rules_apply_to_their_topic_through_arrays_and_leave_the_rest() -> None:
    rules = parse_policy("drop:chat.close:data.conversation.*.user_ip,hash:*:context.user_id")
    body: dict[str, Any] = {
        "topic": "chat.close",
        "data": {"conversation": [{"id": "1", "user_ip": "198.51.100.1"}, {"id": "2"}]},
        "context": {"user_id": "u-1", "request_id": "r"},
    }
    assert apply_policy(rules, body, lambda value: f"h({value})")
    assert body["data"]["conversation"] == [{"id": "1"}, {"id": "2"}]
    assert body["context"] == {"user_id": 'hmac:h("u-1")', "request_id": "r"}
    other: dict[str, Any] = {"topic": "chat.update", "data": {"conversation": [{"user_ip": "x"}]}}
    assert not apply_policy(parse_policy("drop:chat.close:data.conversation.*.user_ip"), other, None)
    assert other["data"]["conversation"] == [{"user_ip": "x"}]
